"""egpu.state"""
