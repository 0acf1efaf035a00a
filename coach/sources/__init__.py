"""Sources of samples: Bluetooth LE sensors, recordings, CSV folders and the simulator."""
