"""gangway."""
