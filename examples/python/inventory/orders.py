"""Orders: lines of (sku, quantity, unit price in cents)."""

from dataclasses import dataclass

from .pricing import price_with_tax_cents, quarterly_rebate_cents


@dataclass
class OrderLine:
    sku: str
    quantity: int
    unit_price_cents: int


def order_total_cents(lines: list[OrderLine], region_code: str) -> int:
    net = sum(line.quantity * line.unit_price_cents for line in lines)
    return price_with_tax_cents(net, region_code)


def rebate_for(line: OrderLine, tier: str) -> int:
    return quarterly_rebate_cents(line.quantity, line.unit_price_cents, tier)
