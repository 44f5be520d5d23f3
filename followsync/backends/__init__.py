"""Targets behind one small protocol: the engine never knows which kind it talks to."""
