"""Fair order inside the queue: which waiting job a worker takes next, and what a dead worker left.

A Redis stream hands out entries only in the order they came, so a key that queued 20 jobs
would have all of them run before another key's one job queued after them. Instead, jobs
read from the stream park with one shared consumer of the group, BACKLOG (keys.py), up to
a window; a worker takes from there, in one script, the entries of the keys with the fewest
rows running in its batch (ties: the oldest entry). Parked entries are in the group's PEL like
any delivered one, so a crash loses nothing; they are idle by design, so reclaiming skips them.
"""

from __future__ import annotations

from typing import Any

from .keys import BACKLOG

# KEYS: jobs stream. ARGV: group, backlog consumer, the taker, how many to take, window,
# then owner/rows pairs (the rows the taker's batch runs for each key).
# Returns {id, flat fields, deliveries} for each entry taken, the first choice first.
TAKE_LUA = """
local group, backlog, me = ARGV[1], ARGV[2], ARGV[3]
local want = tonumber(ARGV[4])
local window = math.max(tonumber(ARGV[5]), want)
local rows = {}
for i = 6, #ARGV, 2 do rows[ARGV[i]] = tonumber(ARGV[i + 1]) end
local function owner_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'owner' then return fields[i + 1] end
  end
  return ''
end
-- (1) what is parked already, oldest first (an entry deleted while parked is settled)
local ids, fields, owners, tries = {}, {}, {}, {}
local function park(id, f, n)
  ids[#ids + 1], fields[#fields + 1], owners[#owners + 1], tries[#tries + 1] = id, f, owner_of(f), n
end
for _, p in ipairs(redis.call('XPENDING', KEYS[1], group, '-', '+', window, backlog)) do
  local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])[1]
  if entry then park(p[1], entry[2], p[4]) else redis.call('XACK', KEYS[1], group, p[1]) end
end
-- (2) topped up from the stream (a read in a script never blocks)
if #ids < window then
  local reply = redis.call('XREADGROUP', 'GROUP', group, backlog, 'COUNT', window - #ids,
    'STREAMS', KEYS[1], '>')
  if reply then
    for _, e in ipairs(reply[1][2]) do park(e[1], e[2], 1) end
  end
end
-- (3) each pick: the key with the fewest rows (running, then picked), its oldest entry
local out, taken = {}, {}
for _ = 1, math.min(want, #ids) do
  local best, fewest = nil, nil
  for i = 1, #ids do
    local n = rows[owners[i]] or 0
    if not taken[i] and (best == nil or n < fewest) then best, fewest = i, n end
  end
  taken[best] = true
  rows[owners[best]] = fewest + 1
  -- (4) to the taker; JUSTID: not counted as a delivery (the read into the backlog was one)
  redis.call('XCLAIM', KEYS[1], group, me, 0, ids[best], 'JUSTID')
  out[#out + 1] = {ids[best], fields[best], tries[best]}
end
return out
"""

# What a dead worker left: pending entries idle past the bound, the backlog's excepted.
# KEYS: jobs stream. ARGV: group, backlog consumer, the claimer, idle ms, most to claim
# (0: claim nothing, only say whether there is one).
# Returns {id, flat fields, deliveries} for each entry claimed ({id} alone when looking).
RECLAIM_LUA = """
local group, backlog, me, idle = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local most = tonumber(ARGV[5])
local out, start = {}, '-'
while true do
  local page = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, start, '+', 100)
  for _, p in ipairs(page) do
    if p[2] ~= backlog then
      if most == 0 then return {{p[1]}} end
      local got = redis.call('XCLAIM', KEYS[1], group, me, idle, p[1])
      if got[1] then
        out[#out + 1] = {p[1], got[1][2], p[4] + 1}
        if #out >= most then return out end
      else
        -- deleted while pending: nothing to run, just settle it
        redis.call('XACK', KEYS[1], group, p[1])
      end
    end
  end
  if #page < 100 then return out end
  start = '(' .. page[#page][1]
end
"""


def parked(pending: Any) -> int:
    """How many entries of an XPENDING summary (redis-py's dict) wait in the backlog."""
    return sum(
        int(c["pending"]) for c in pending.get("consumers") or () if c["name"] in (BACKLOG, BACKLOG.encode())
    )


def as_fields(flat: list[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields from a script's flat field/value list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
