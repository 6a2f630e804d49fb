"""Currency reference data: US dollars per unit of each currency ShopSmart accepts.

Fixed reference rates (the finance team's monthly book rates); an order in any other currency
is quarantined as `unknown_currency` rather than guessed at.
"""

USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "CAD": 0.73,
}
