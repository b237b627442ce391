"""API tests (a package so helper imports from conftest are unambiguous)."""
