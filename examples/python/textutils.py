"""Small text helpers (the code-action tests work on this file)."""


def word_count(text):
    return len(text.split())


def slugify(title: str) -> str:
    """Lower-case the title and join its words with hyphens."""
    pass


def shout(message: str) -> str:
    return message.upper() + "!"


def average_length(words: list[str]) -> float:
    total = sum(len(word) for word in words)
    return total / len(word)


def evens(numbers: list[int]) -> list[int]:
    result = []
    for number in numbers:
        if number % 2 == 0:
            result.append(number)
    return result


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}!"
