// The Lua scripts RedisQuota runs: each step of a request's reservation is one
// script, so Redis applies it atomically whatever the other replicas do.
//
// The arithmetic is tokenBucket.ts's, line for line: a bucket is its deficit
// scaled by 60 000 (it drains by exactly the per-minute limit each ms), so
// every value is an integer; Lua numbers are doubles, exact below 2^53 (a
// limit of 10^9 tokens a minute scales to 6·10^13). Numbers are written with
// %.0f: Redis turns a Lua number into a string with %.14g, which would round
// anything past 14 digits. The admission order is decideAdmission's (the TS
// side re-derives the refusal's details from the returned snapshot with
// decideAdmission itself, and checks both agree).
//
// Keys of one tenant (KEYS[1..4], one hash tag, so a cluster keeps them on
// one node): the state hash, the running and queued leases (sorted sets
// scored by expiry, ms), and the tokens each live reservation holds.
// Clock: ARGV[1] when given (tests), else Redis TIME: one clock for every
// replica, whatever their own say.

import type { TenantLimits } from "../../tenants/types.js";
import type { UsageSnapshot } from "../admission.js";
import { LuaScript } from "./client.js";

const PRELUDE = `
local P = 60000
local DAY = 86400000
local function num(x) if x == false or x == nil or x == '' then return nil end return tonumber(x) end
local function f(x) return string.format('%.0f', x) end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- tokenBucket.refilled: a null limit is not metered (always full)
local function refill(def, at, limit, now)
  if limit == nil then return 0, math.max(at, now) end
  return math.max(0, def - math.max(0, now - at) * limit), math.max(at, now)
end
local function load()
  local h = redis.call('HMGET', KEYS[1], 'rd', 'ra', 'td', 'ta', 'rpm', 'tpm', 'day', 'dt', 'lt', 'seeded', 'ep')
  if h[1] == false then return nil end
  return { rd = tonumber(h[1]), ra = tonumber(h[2]), td = tonumber(h[3]), ta = tonumber(h[4]), rpm = num(h[5]), tpm = num(h[6]),
    day = tonumber(h[7]), dt = tonumber(h[8]), lt = tonumber(h[9]), seeded = h[10] == '1', ep = h[11] }
end
local function fresh(now, rpm, tpm, ep, seeded)
  return { rd = 0, ra = now, td = 0, ta = now, rpm = rpm, tpm = tpm, day = math.floor(now / DAY), dt = 0, lt = 0, seeded = seeded, ep = ep }
end
local function save(s)
  redis.call('HSET', KEYS[1], 'rd', f(s.rd), 'ra', f(s.ra), 'td', f(s.td), 'ta', f(s.ta),
    'rpm', s.rpm and f(s.rpm) or '', 'tpm', s.tpm and f(s.tpm) or '', 'day', f(s.day), 'dt', f(s.dt), 'lt', f(s.lt),
    'seeded', s.seeded and '1' or '0', 'ep', s.ep)
end
local function touch(ttl)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
-- QuotaLedger.current: refill under the limits that held until now, then adopt the new ones; roll the day
local function bring(s, now, rpm, tpm)
  s.rd, s.ra = refill(s.rd, s.ra, s.rpm, now)
  s.td, s.ta = refill(s.td, s.ta, s.tpm, now)
  s.rpm, s.tpm = rpm, tpm
  s.rd, s.ra = refill(s.rd, s.ra, s.rpm, now)
  s.td, s.ta = refill(s.td, s.ta, s.tpm, now)
  local today = math.floor(now / DAY)
  if today > s.day then s.day = today; s.dt = 0 end
end
-- Leases not renewed by their replica (it died) end here: their place is
-- freed; what they hold stays charged (nobody can count what they used).
local function purge(now)
  for _, k in ipairs({ KEYS[2], KEYS[3] }) do
    local dead = redis.call('ZRANGEBYSCORE', k, '-inf', f(now))
    for _, m in ipairs(dead) do redis.call('HDEL', KEYS[4], m) end
    if #dead > 0 then redis.call('ZREMRANGEBYSCORE', k, '-inf', f(now)) end
  end
end
-- admission.decideAdmission, same order; returns the refusal's kind or nil
local function decide(u, L, est)
  if L.life and u.lt + est > L.life then return 'lifetime' end
  if L.daily and u.dt + est > L.daily then return 'daily' end
  if L.rpm and 1 > L.rpm then return 'too_large' end
  if L.tpm and est > L.tpm then return 'too_large' end
  if L.rpm and u.rd + (1 - L.rpm) * P > 0 then return 'rate' end
  if L.tpm and u.td + (est - L.tpm) * P > 0 then return 'rate' end
  if L.maxc and u.running + u.queued + 1 > L.maxc then return 'concurrent' end
  if L.maxq and u.queued + 1 > L.maxq then return 'queued' end
  return nil
end
local function snap(u, now, ep)
  return { f(u.rd), f(u.ra), f(u.td), f(u.ta), f(u.running), f(u.queued), f(u.dt), f(u.lt), f(now), ep or '' }
end
local function limits(a)
  return { rpm = num(ARGV[a]), tpm = num(ARGV[a + 1]), daily = num(ARGV[a + 2]), life = num(ARGV[a + 3]), maxc = num(ARGV[a + 4]), maxq = num(ARGV[a + 5]) }
end
`;

/**
 * KEYS: state, running, queued, held. ARGV: now, rpm, tpm, daily, lifetime,
 * maxConcurrent, maxQueued, estimate, member, leaseMs, ttlMs, epoch (used if
 * the state is new), needSeed ('1': a usage store exists), seeded ('1': the
 * next three are the stored usage), seedDay (day number), seedDayTokens, seedLifetime.
 * Returns {'seed'} when the state needs the stored usage first, else
 * {'ok'|'no', snapshot...} (the snapshot after the charge, or the one refused on).
 */
export const RESERVE = `${PRELUDE}
local now = clock(ARGV[1])
local L = limits(2)
local s = load()
if s == nil then s = fresh(now, L.rpm, L.tpm, ARGV[12], ARGV[13] ~= '1') end
if not s.seeded then
  if ARGV[14] ~= '1' then return { 'seed' } end
  s.lt = s.lt + tonumber(ARGV[17])
  if tonumber(ARGV[15]) == s.day then s.dt = s.dt + tonumber(ARGV[16]) end
  s.seeded = true
end
bring(s, now, L.rpm, L.tpm)
purge(now)
s.running = redis.call('ZCARD', KEYS[2])
s.queued = redis.call('ZCARD', KEYS[3])
local est = tonumber(ARGV[8])
local ttl = ARGV[11]
if decide(s, L, est) then
  save(s); touch(ttl)
  return { 'no', snap(s, now, s.ep) }
end
s.rd = s.rd + P
s.td = s.td + est * P
s.dt = s.dt + est
s.lt = s.lt + est
redis.call('ZADD', KEYS[3], f(now + tonumber(ARGV[10])), ARGV[9])
redis.call('HSET', KEYS[4], ARGV[9], f(est))
s.queued = s.queued + 1
save(s); touch(ttl)
return { 'ok', snap(s, now, s.ep) }
`;

/**
 * KEYS: state, running, queued, held. ARGV: now, rpm, tpm, daily, lifetime,
 * maxConcurrent, maxQueued, exact tokens, member, reservation day number, ttlMs.
 * Returns {'ok'} (done, or nothing to do) or {'no', snapshot now, snapshot without the reservation}.
 */
export const RESIZE = `${PRELUDE}
local now = clock(ARGV[1])
local L = limits(2)
local s = load()
if s == nil then return { 'ok' } end
bring(s, now, L.rpm, L.tpm)
purge(now)
local held = num(redis.call('HGET', KEYS[4], ARGV[9]))
local exact = tonumber(ARGV[8])
local ttl = ARGV[11]
if held == nil or held == exact then save(s); touch(ttl); return { 'ok' } end
local resDay = tonumber(ARGV[10])
s.running = redis.call('ZCARD', KEYS[2])
s.queued = redis.call('ZCARD', KEYS[3])
if exact > held then
  local running = redis.call('ZSCORE', KEYS[2], ARGV[9]) ~= false
  local w = { rd = math.max(0, s.rd - P), ra = s.ra, td = math.max(0, s.td - held * P), ta = s.ta,
    running = s.running - (running and 1 or 0), queued = s.queued - (running and 0 or 1),
    dt = (s.day == resDay) and (s.dt - held) or s.dt, lt = s.lt - held }
  if decide(w, L, exact) then
    save(s); touch(ttl)
    return { 'no', snap(s, now, s.ep), snap(w, now, s.ep) }
  end
end
local delta = exact - held
if s.tpm then s.td = math.max(0, s.td + delta * P) end
if s.day == resDay then s.dt = math.max(0, s.dt + delta) end
s.lt = math.max(0, s.lt + delta)
redis.call('HSET', KEYS[4], ARGV[9], f(exact))
save(s); touch(ttl)
return { 'ok' }
`;

/** KEYS: state, running, queued, held. ARGV: now, member, leaseMs, ttlMs. Queued → running, once. */
export const STARTED = `${PRELUDE}
local now = clock(ARGV[1])
if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], f(now + tonumber(ARGV[3])), ARGV[2])
end
touch(ARGV[4])
return 1
`;

/**
 * KEYS: state, running, queued, held. ARGV: now, 'settle'|'cancel', actual
 * tokens, tokens this replica knows it holds, member, reservation day number,
 * the state's epoch at reserve, ttlMs. QuotaLedger.finish: counters move by
 * actual − held (settle) or −held and one request (cancel).
 */
export const FINISH = `${PRELUDE}
local now = clock(ARGV[1])
local member = ARGV[5]
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', KEYS[3], member)
local heldHere = num(redis.call('HGET', KEYS[4], member))
redis.call('HDEL', KEYS[4], member)
local s = load()
if s == nil then return 'gone' end
-- QuotaLedger.finish refills under the limits the state holds, and rolls no day
s.rd, s.ra = refill(s.rd, s.ra, s.rpm, now)
s.td, s.ta = refill(s.td, s.ta, s.tpm, now)
local settle = ARGV[2] == 'settle'
local tokenDelta, requestDelta
if s.ep ~= ARGV[7] then
  -- The books were rebuilt since this request was reserved (Redis lost them,
  -- or the tenant was forgotten): its charge is not in them, its use is.
  if not settle or not s.seeded then return 'lost' end
  tokenDelta, requestDelta = tonumber(ARGV[3]), 0
else
  -- A lease purged meanwhile took its held tokens' record: this replica's is as good.
  local held = heldHere or tonumber(ARGV[4])
  if settle then tokenDelta, requestDelta = tonumber(ARGV[3]) - held, 0 else tokenDelta, requestDelta = -held, -1 end
end
if s.rpm then s.rd = math.max(0, s.rd + requestDelta * P) end
if s.tpm then s.td = math.max(0, s.td + tokenDelta * P) end
if s.day == tonumber(ARGV[6]) then s.dt = math.max(0, s.dt + tokenDelta) end
s.lt = math.max(0, s.lt + tokenDelta)
save(s); touch(ARGV[8])
return 'ok'
`;

/**
 * KEYS: state, running, queued, held. ARGV: now, rpm, tpm, needSeed, epoch, ttlMs.
 * The buckets brought to now under the current limits (headers), as {rd, ra, td, ta}.
 */
export const HEADERS = `${PRELUDE}
local now = clock(ARGV[1])
local rpm, tpm = num(ARGV[2]), num(ARGV[3])
local s = load()
if s == nil then s = fresh(now, rpm, tpm, ARGV[5], ARGV[4] ~= '1') end
bring(s, now, rpm, tpm)
save(s); touch(ARGV[6])
return { f(s.rd), f(s.ra), f(s.td), f(s.ta), f(now) }
`;

/** KEYS: state, running, queued, held. ARGV: now. {day number, dayTokens today, lifetime, running, queued} or nil. */
export const USAGE = `${PRELUDE}
local now = clock(ARGV[1])
local s = load()
if s == nil then return nil end
purge(now)
local today = math.floor(now / DAY)
local dt = (s.day == today) and s.dt or 0
return { f(today), f(dt), f(s.lt), f(redis.call('ZCARD', KEYS[2])), f(redis.call('ZCARD', KEYS[3])) }
`;

/**
 * KEYS: state, running, queued, held. ARGV: now, leaseMs, ttlMs, then pairs
 * of member and 'running'|'queued'. Pushes the live leases' expiry out. A
 * lease that lapsed meanwhile (this replica was cut off from Redis longer
 * than the lease) is taken again: the request is still running, so it counts.
 */
export const RENEW = `${PRELUDE}
local now = clock(ARGV[1])
local until_ = f(now + tonumber(ARGV[2]))
for i = 4, #ARGV, 2 do
  local running = ARGV[i + 1] == 'running'
  redis.call('ZADD', running and KEYS[2] or KEYS[3], until_, ARGV[i])
  -- its started() may have failed to reach Redis: it is in one set only
  redis.call('ZREM', running and KEYS[3] or KEYS[2], ARGV[i])
end
touch(ARGV[3])
return 1
`;

/** KEYS: replicas. ARGV: now, replica id, ttlMs. This replica is alive; returns how many are. */
export const HEARTBEAT = `${PRELUDE}
local now = clock(ARGV[1])
redis.call('ZADD', KEYS[1], f(now + tonumber(ARGV[3])), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', f(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])
`;

export const SCRIPTS = {
  reserve: new LuaScript(RESERVE),
  resize: new LuaScript(RESIZE),
  started: new LuaScript(STARTED),
  finish: new LuaScript(FINISH),
  headers: new LuaScript(HEADERS),
  usage: new LuaScript(USAGE),
  renew: new LuaScript(RENEW),
  heartbeat: new LuaScript(HEARTBEAT),
};

/** A tenant's limits as the scripts take them (ARGV order of limits(a)); "" for no limit. */
export function limitArgs(l: TenantLimits): string[] {
  return [l.requestsPerMinute, l.tokensPerMinute, l.tokensPerDay, l.lifetimeTokens, l.maxConcurrent, l.maxQueued].map(nullable);
}

export function nullable(n: number | null): string {
  return n === null ? "" : String(n);
}

export function parseSnapshot(s: string[]): Snapshot {
  const [rd, ra, td, ta, running, queued, dt, lt, now] = s.slice(0, 9).map(Number) as number[];
  return {
    requests: { scaledDeficit: rd!, atMs: ra! },
    tokens: { scaledDeficit: td!, atMs: ta! },
    running: running!,
    queued: queued!,
    dayTokens: dt!,
    lifetimeTokens: lt!,
    nowMs: now!,
    epoch: s[9] ?? "",
  };
}

/** What snap() returns: the usage decideAdmission reads, at the script's clock, and the state's epoch. */
export interface Snapshot extends UsageSnapshot {
  nowMs: number;
  epoch: string;
}
