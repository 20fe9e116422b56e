import pytest

from rrr.symbols import SymbolError, pair_to_ticker, ticker_to_asset, ticker_to_pair


@pytest.mark.parametrize(
    ("ticker", "pair", "asset"),
    [
        ("X:BTCUSD", "BTC-USD", "BTC"),
        ("X:ETHUSD", "ETH-USD", "ETH"),
        ("X:ETHBTC", "ETH-BTC", "ETH"),
        ("X:SOLUSDT", "SOL-USDT", "SOL"),
        ("X:DOGEEUR", "DOGE-EUR", "DOGE"),
    ],
)
def test_round_trip(ticker: str, pair: str, asset: str) -> None:
    assert ticker_to_pair(ticker) == pair
    assert pair_to_ticker(pair) == ticker
    assert ticker_to_asset(ticker) == asset


def test_prefixed_pair_seen_in_some_feeds_is_accepted() -> None:
    assert pair_to_ticker("X:BTC-USD") == "X:BTCUSD"


@pytest.mark.parametrize("junk", ["BTCUSD", "X:btcusd", "BTC-USD", "X:BTC-USD", "X:", "X:USD", ""])
def test_bad_tickers_say_the_expected_form(junk: str) -> None:
    with pytest.raises(SymbolError, match=r"X:BTCUSD|quote currency"):
        ticker_to_pair(junk)


@pytest.mark.parametrize("junk", ["X:BTCUSD", "btc-usd", "BTC_USD", "BTC-", "-USD", ""])
def test_bad_pairs_say_the_expected_form(junk: str) -> None:
    with pytest.raises(SymbolError, match="BTC-USD"):
        pair_to_ticker(junk)
