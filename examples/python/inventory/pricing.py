"""Prices are integers in cents; discounts depend on quantity and the customer's loyalty tier."""

LOYALTY_RATES = {"bronze": 2, "silver": 5, "gold": 9}


def quarterly_rebate_cents(quantity_shipped: int, unit_price_cents: int, loyalty_tier: str) -> int:
    """Rebate owed at the end of a quarter for `quantity_shipped` units."""
    rate = LOYALTY_RATES.get(loyalty_tier, 0)
    bulk = 3 if quantity_shipped >= 100 else 0
    return quantity_shipped * unit_price_cents * (rate + bulk) // 100


def price_with_tax_cents(net_cents: int, region_code: str) -> int:
    """Gross price for a region (VAT-like percentages)."""
    rates = {"EU": 21, "UK": 20, "US": 0}
    return net_cents + net_cents * rates.get(region_code, 0) // 100
