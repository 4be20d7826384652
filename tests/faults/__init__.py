"""The fault matrix (issue #5): one real injected fault per test."""
