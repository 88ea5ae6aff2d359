"""PIN letters: a letter by post with a PIN that raises a recipient account's identity level to
``confirmed`` when it is entered on the portal.

A letter is requested by the signed-in account holder (portal page ``pin_letters.request``) or
by an administrator (``siegel letters request``); ``siegel letters render`` prints every pending
letter of a tenant into one PDF and issues their PINs; ``pin_letters.confirm`` takes the PIN.
Everything lives in the store (plugin state ``pin_letters``): the PIN only as an Argon2id hash.
"""
