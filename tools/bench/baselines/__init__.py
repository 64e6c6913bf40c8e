"""Two naive designs the tier is measured against; not part of the product."""
