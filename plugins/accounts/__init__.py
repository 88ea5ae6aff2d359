"""The ``accounts`` plugin: the portal's one sign-in for every plugin's pages.

Login with address and password, log-out, the account page (change the password, second
factors, recovery codes) and the second-factor step after the password, on the core's recipient
accounts (:mod:`siegel.accounts`). Other plugins' pages ask ``portal.signed_in()`` and send
everyone else to ``portal.sign_in_redirect()``; they never import this plugin.
"""
