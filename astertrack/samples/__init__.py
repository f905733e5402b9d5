"""The demo data set, the row factories it, the tests, benches and lab share, and their process helpers."""
