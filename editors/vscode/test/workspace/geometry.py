"""Small shapes used by the editor end-to-end tests."""

import math


def circle_area(radius):
    return math.pi * radius * radius


def rectangle_area(width, height):
    return width * height
