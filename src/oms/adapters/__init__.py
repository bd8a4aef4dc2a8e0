"""Everything that touches the outside world: database, broker, gateways, clock."""
