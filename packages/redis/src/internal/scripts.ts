/**
 * The Lua scripts behind the Redis store, one per store operation. Each runs atomically on the
 * server, in one round trip, and mirrors `@sluice/core`'s `internal/bucket.ts` arithmetic exactly:
 *
 * - a bucket is a string `"<level> <at>"` (read with one MGET for all the keys of a call, written
 *   with one SET PX each, its TTL included); a missing key is a full bucket;
 * - lazy refill `min(capacity, level + max(0, now - at) * refillPerMs)`; the level may be negative;
 * - `fits` uses `EPSILON * max(capacity, 1)`; `wait_for` rounds up to whole milliseconds (>= 1) and is
 *   infinite when nothing refills; `acquire` caps a debit at the capacity before it (`waitForDebit`: a debit
 *   above the capacity waits for a full bucket, then takes it into debt), so it is never infinite for a size;
 * - a gate is a string key holding its "not before" time in milliseconds.
 *
 * Time: `ARGV[1]` is the current time in milliseconds, or the empty string to read the server's
 * `TIME` (floored to whole milliseconds, like `Clock.currentTimeMillis`).
 *
 * Numbers travel as strings (`%.17g`), because Redis truncates Lua numbers to integers in replies.
 *
 * Every key written gets a TTL: a bucket lives as long as it takes to refill to full plus a margin
 * (after which a missing key means the same thing: full); a gate lives for its remaining time plus
 * the margin (after which a missing key means the same thing: open).
 *
 * @internal
 */
import { createHash } from "node:crypto"

const prelude = `
local EPSILON = 1e-9
local now_s
local function now_ms(arg)
  local now
  if arg ~= nil and arg ~= '' then
    now = tonumber(arg)
  else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  now_s = string.format('%.17g', now)
  return now
end
local function num(x) return string.format('%.17g', x) end
local function level_of(st, capacity, refill, now)
  if st == false then return capacity end
  local sp = string.find(st, ' ', 1, true)
  local level, at = tonumber(string.sub(st, 1, sp - 1)), tonumber(string.sub(st, sp + 1))
  local elapsed = 0
  if now > at then elapsed = now - at end
  level = level + elapsed * refill
  if level > capacity then return capacity end
  return level
end
local function level_at(key, capacity, refill, now)
  return level_of(redis.call('GET', key), capacity, refill, now)
end
local function fits(level, amount, capacity)
  local c = capacity
  if c < 1 then c = 1 end
  return level + EPSILON * c >= amount
end
local function wait_for(level, amount, capacity, refill)
  if amount > capacity + EPSILON * capacity then return math.huge end
  if fits(level, amount, capacity) then return 0 end
  if refill <= 0 then return math.huge end
  local w = math.ceil((amount - level) / refill - EPSILON)
  if w < 1 then w = 1 end
  return w
end
local function store(key, level, now, capacity, refill, margin, window)
  if level > capacity then level = capacity end
  local ttl
  if refill > 0 then
    ttl = math.ceil((capacity - level) / refill)
  else
    ttl = window
  end
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, num(level) .. ' ' .. now_s, 'PX', ttl + margin)
end
local function gate_of(v, now)
  if v == false then return 0 end
  local left = tonumber(v) - now
  if left > 0 then return left end
  return 0
end
`

/**
 * KEYS: gate keys (ARGV[2] of them), then bucket keys.
 * ARGV: now | '', gate count, margin, then per bucket: capacity, refillPerMs, amount, windowMillis.
 * Returns `{ 'A' }` (admitted, every bucket charged) or `{ 'D', wait, index, reason }` where `index`
 * is the 1-based position of the binding gate (reason 'gate') or bucket (reason 'limit') and `wait`
 * is a number or 'inf'. Nothing is written when denied.
 */
export const acquire = prelude + `
local now = now_ms(ARGV[1])
local ngates = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
local worst, worst_index, worst_reason = 0, 0, ''
local values = redis.call('MGET', unpack(KEYS))
for i = 1, ngates do
  local left = gate_of(values[i], now)
  if left > worst then worst, worst_index, worst_reason = left, i, 'gate' end
end
local n = #KEYS - ngates
local levels = {}
local seen = {}
local repeated = false
for j = 1, n do
  if seen[KEYS[ngates + j]] then repeated = true end
  seen[KEYS[ngates + j]] = true
  local a = 4 + (j - 1) * 4
  local capacity, refill, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level = level_of(values[ngates + j], capacity, refill, now)
  levels[j] = level
  -- a debit above the capacity (a cost above a burst) needs the bucket full, then takes it into debt
  local w = wait_for(level, math.min(amount, capacity), capacity, refill)
  if w > worst then worst, worst_index, worst_reason = w, j, 'limit' end
end
if worst_index ~= 0 then
  local w = 'inf'
  if worst ~= math.huge then w = num(worst) end
  return { 'D', w, worst_index, worst_reason, now_s }
end
for j = 1, n do
  local a = 4 + (j - 1) * 4
  local capacity, refill, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local key = KEYS[ngates + j]
  -- the level read above, unless the same bucket appears twice in this call (then re-read)
  local level = levels[j]
  if repeated then level = level_at(key, capacity, refill, now) end
  level = level - amount
  store(key, level, now, capacity, refill, margin, tonumber(ARGV[a + 3]))
end
return { 'A', now_s }
`

/**
 * KEYS: bucket keys. ARGV: now | '', margin, then per bucket: capacity, refillPerMs, amount,
 * windowMillis. Charges positive amounts (into debt if need be) and refunds negative ones (capped at
 * capacity).
 */
export const adjust = prelude + `
local now = now_ms(ARGV[1])
local margin = tonumber(ARGV[2])
for j = 1, #KEYS do
  local a = 3 + (j - 1) * 4
  local capacity, refill, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level = level_at(KEYS[j], capacity, refill, now) - amount
  store(KEYS[j], level, now, capacity, refill, margin, tonumber(ARGV[a + 3]))
end
return num(now)
`

/**
 * KEYS[1]: the gate. ARGV: now | '', millis, margin. Sets "not before" = now + max(0, millis), keeping
 * the later of that and the current one.
 */
export const block = prelude + `
local now = now_ms(ARGV[1])
local millis = tonumber(ARGV[2])
if millis < 0 then millis = 0 end
local margin = tonumber(ARGV[3])
local until_ = now + millis
local current = redis.call('GET', KEYS[1])
if current == false or tonumber(current) < until_ then
  local ttl = math.ceil(until_ - now) + margin
  if ttl < 1 then ttl = 1 end
  redis.call('SET', KEYS[1], num(until_), 'PX', ttl)
end
return num(now)
`

/**
 * KEYS[1]: the bucket. ARGV: now | '', margin, capacity, refillPerMs, remaining, windowMillis.
 * Lowers the level to `remaining`, never raises it.
 */
export const observe = prelude + `
local now = now_ms(ARGV[1])
local margin = tonumber(ARGV[2])
local capacity, refill, remaining = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local level = level_at(KEYS[1], capacity, refill, now)
if remaining < level then
  store(KEYS[1], remaining, now, capacity, refill, margin, tonumber(ARGV[6]))
  return 1
end
return 0
`

/**
 * KEYS: gate keys (ARGV[2] of them), then bucket keys. ARGV: now | '', gate count, then per bucket:
 * capacity, refillPerMs. Read-only. Returns `{ now, gate remaining..., level... }`.
 */
export const levels = prelude + `
local now = now_ms(ARGV[1])
local ngates = tonumber(ARGV[2])
local out = { now_s }
if #KEYS == 0 then return out end
local values = redis.call('MGET', unpack(KEYS))
for i = 1, ngates do out[#out + 1] = num(gate_of(values[i], now)) end
for j = 1, #KEYS - ngates do
  local a = 3 + (j - 1) * 2
  out[#out + 1] = num(level_of(values[ngates + j], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), now))
end
return out
`

/**
 * Holds with a lease (`HoldStore` of `@sluice/core`). A scope's holds are one hash, field = hold id, value =
 * `"<amount> <expires>"` (store milliseconds, `%.17g`); a field whose expiry has passed is no hold (and is
 * removed when met). The hash's TTL follows its latest expiry plus the margin, so a scope nobody holds on any
 * more disappears.
 *
 * KEYS: the scopes' hashes. ARGV: now | '', operation (`take`, `renew`, `release`, `held`), id, amount,
 * leaseMillis, margin, then (take) each key's capacity.
 * Returns `{ result, now }`: take and renew `'1'` or `'0'`, release `'1'`, held the first key's sum.
 */
export const holds = prelude + `
local now = now_ms(ARGV[1])
local op, id = ARGV[2], ARGV[3]
local amount, lease, margin = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function parse(v)
  local sp = string.find(v, ' ', 1, true)
  return tonumber(string.sub(v, 1, sp - 1)), tonumber(string.sub(v, sp + 1))
end
-- the unexpired holds' sum (but id's own), the expired ones removed
local function others(key)
  local all = redis.call('HGETALL', key)
  local sum = 0
  for i = 1, #all, 2 do
    local a, e = parse(all[i + 1])
    if e <= now then
      redis.call('HDEL', key, all[i])
    elseif all[i] ~= id then
      sum = sum + a
    end
  end
  return sum
end
local function keep(key, expires)
  local ttl = math.ceil(expires - now) + margin
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
if op == 'take' then
  for j = 1, #KEYS do
    if not fits(tonumber(ARGV[6 + j]) - others(KEYS[j]), amount, tonumber(ARGV[6 + j])) then return { '0', now_s } end
  end
  for j = 1, #KEYS do
    redis.call('HSET', KEYS[j], id, num(amount) .. ' ' .. num(now + lease))
    keep(KEYS[j], now + lease)
  end
  return { '1', now_s }
elseif op == 'renew' then
  local amounts = {}
  for j = 1, #KEYS do
    local v = redis.call('HGET', KEYS[j], id)
    if v == false then return { '0', now_s } end
    local a, e = parse(v)
    if e <= now then return { '0', now_s } end
    amounts[j] = a
  end
  for j = 1, #KEYS do
    redis.call('HSET', KEYS[j], id, num(amounts[j]) .. ' ' .. num(now + lease))
    keep(KEYS[j], now + lease)
  end
  return { '1', now_s }
elseif op == 'release' then
  for j = 1, #KEYS do redis.call('HDEL', KEYS[j], id) end
  return { '1', now_s }
end
id = ''
return { num(others(KEYS[1])), now_s }
`

/** @internal */
export interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
}

const script = (name: string, source: string): Script => ({
  name,
  source,
  sha: createHash("sha1").update(source).digest("hex")
})

/** @internal */
export const scripts = {
  acquire: script("acquire", acquire),
  adjust: script("adjust", adjust),
  block: script("block", block),
  observe: script("observe", observe),
  levels: script("levels", levels),
  holds: script("holds", holds)
} as const
