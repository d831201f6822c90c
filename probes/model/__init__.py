"""The vocabulary: events, options, errors, the findings catalog and its grading, names, safe text."""
