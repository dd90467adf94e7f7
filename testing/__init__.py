"""Test tooling shared by tests/, bench/ and dev/demo.py: real servers and faults.

``motostack`` starts moto servers (plain, or AWS-faithful) one process per
endpoint; ``faultproxy`` sits in front of one and injects faults.
"""
