"""The sans-I/O protocol layers: bytes or frames in, events out, bytes out.

Nothing here imports trio, reads a clock or a setting: the transports in
:mod:`trio_mud.transports` own the sockets and the time. Each module is
tested with byte strings alone.

- :mod:`.telnet`: telnet itself (RFC 1143 option negotiation, lines, caps,
  MCCP3 input).
- :mod:`.mudtelnet`: the MUD protocols over it (TTYPE/MTTS, NAWS,
  NEW-ENVIRON, CHARSET, EOR, ECHO, GMCP, MSDP, MSSP, MCCP2).
- :mod:`.wsformats`: what a WebSocket frame means in each format (Evennia's
  JSON, the mudstandards.org subprotocols).
- :mod:`.clientjson`: JSON from clients, parsed with a cap on nesting.
"""
