"""PWM itself: config, networks, TD(lambda) returns, replay, the trainer and the one-cell driver."""
