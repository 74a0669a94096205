"""Operations glue for running postal: the Redis launcher and the local stack (`make run`).

Nothing here is imported by the API or by job code.
"""
