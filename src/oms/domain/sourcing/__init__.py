"""Sourcing: which location fulfills which line quantity, at what cost, and why.

Plain data in (a snapshot of candidate locations, the order lines, profiles as data), a plan
with its explanation out. ``planner.plan_order`` decides in real time (greedy); ``batch`` plans
a wave of orders as one mixed-integer programme (HiGHS through SciPy) and never does worse than
the greedy plan of the same wave.
"""
