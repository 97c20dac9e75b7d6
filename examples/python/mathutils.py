"""Small numeric helpers."""


def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def clamp(value: float, low: float, high: float) -> float:
    """Limit value to the closed interval [low, high]."""
    return max(low, min(high, value))


def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list."""
    return sum(values) / len(values)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def normalise(values: list[float]) -> list[float]:
    pass
