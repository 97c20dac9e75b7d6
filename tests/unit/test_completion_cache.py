from __future__ import annotations

from lsp.completion.cache import CompletionCache


def test_typing_through_serves_the_rest():
    cache = CompletionCache()
    text = "def f(n):\n    return \n"
    offset = text.index("return ") + len("return ")
    cache.store("u", text, offset, "fib(n - 1)")
    typed = text[:offset] + "fib" + text[offset:]
    assert cache.lookup("u", typed, offset + 3) == "(n - 1)"


def test_a_different_character_misses():
    cache = CompletionCache()
    text = "x = \n"
    cache.store("u", text, 4, "compute()")
    assert cache.lookup("u", "x = d\n", 5) is None


def test_other_documents_and_changed_suffixes_miss():
    cache = CompletionCache()
    cache.store("u", "x = \nA\n", 4, "compute()")
    assert cache.lookup("v", "x = c\nA\n", 5) is None
    assert cache.lookup("u", "x = c\nB\n", 5) is None


def test_typing_all_of_it_leaves_nothing_to_show():
    cache = CompletionCache()
    cache.store("u", "x = \n", 4, "ab")
    assert cache.lookup("u", "x = ab\n", 6) is None
