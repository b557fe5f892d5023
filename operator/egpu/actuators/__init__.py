"""egpu.actuators"""
