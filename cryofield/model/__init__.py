"""What a case can name: quantities and curves, the tissue library and its laws, region roles and clinical
thresholds, the protocol schedule, and the boundary and device models (``boundaries``)."""
