"""Reading traces (``traces``) and the read stage (``stage``)."""
