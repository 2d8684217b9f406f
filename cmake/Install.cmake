# Install rules, package config and pkg-config file (owned by the packaging work).
