"""What every layer uses: run configs, devices and precision, paired statistics, safe weight files."""
