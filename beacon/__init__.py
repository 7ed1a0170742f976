"""beacon: the command line, configuration and the wiring of the stages."""
