"""What supervisors and marketers read: report queries with their formulas, number and ad-cost imports."""
