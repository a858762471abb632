"""Built-in routing strategies, each registered through the routing-strategy hook."""
