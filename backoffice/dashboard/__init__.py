"""The back-office dashboard at /admin/dashboard/: is something wrong now, and how the product is doing, in
aggregates only.

Any staff user may open it, and sees the figures of what they may open the lists of (``figures.SEES``): a clerk of
the vault its tokens, an operator the webhooks. The page holds counts, and for whoever may open the endpoints their
merchant names, URLs and errors; never a card, a card or token number, or a tokenId. It must stay fast with millions
of tokens, so every number comes from an aggregate query or an index's first entries, and their number is fixed
whatever the size of the data (tests/backoffice/test_dashboard.py counts them).

- ``views``: the page and its live part, which the page's script fetches again without a reload;
- ``figures``: the live numbers (webhooks, endpoints in trouble, network-token failures), asked of the apps'
  selectors, and who sees which;
- ``status``: the thresholds that colour the tiles, and the status strip;
- ``charts`` and ``webhook_charts``: the charts, drawn on the server as SVG with a table of their numbers.
"""
