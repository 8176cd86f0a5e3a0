// The Lua script that decides, inside Redis, what every chat_server.ts of a
// room must agree on: who holds a name, and which servers are alive. Part
// of the chat chapter: redis.ts runs it with EVAL for each operation. A
// file of its own because it is another language, with its own comment.
// Redis runs a script alone, from start to end, so no other server's
// command comes between reading a name's holder and taking the name.
//
// KEYS: names (a hash: lower-case name -> "server Name"), servers (a sorted
// set: server -> the end of its lease, in ms), the guest counter.
// ARGV: the operation, this server, then the operation's own arguments:
//   claim KEY NAME       1, or 0 when another live server holds KEY
//   lookup KEY           the server holding KEY, or nil
//   guest                a name "guestN" nobody holds, now ours
//   release KEY          lets go of one of our names
//   release              lets go of all of them and of our lease
//   who MAX              {how many names are live, the first MAX of them}
//   beat LEASE           renews our lease; frees the names of servers whose
//                        lease ran out: {1 if we were gone, names, freed}
//   register LEASE KEY NAME...  our names after a split: 1 or 0 for each;
//                        ours not listed are let go (they left meanwhile)
// A name held by a server whose lease ran out counts as free everywhere.
//
// Read first: take, then the 'beat' and 'register' branches.

/** KEY NAME for each member, as claim and register take them. */
export function pairs(members: { name: string }[]): string[] {
  return members.flatMap(({ name }) => [name.toLowerCase(), name]);
}

export const SCRIPT = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local names, servers, op, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local function owner(held) return string.match(held, '^(%S+) ') end
local function shown(held) return string.match(held, ' (.*)$') end
local function alive(server)
  local lease = redis.call('ZSCORE', servers, server)
  return lease and tonumber(lease) > now
end
local function holder(key)
  local held = redis.call('HGET', names, key)
  if held and alive(owner(held)) then return owner(held) end
end
local function take(key, name) -- 0 when another live server holds it
  local other = holder(key)
  if other and other ~= me then return 0 end
  redis.call('HSET', names, key, me .. ' ' .. name)
  return 1
end
if op == 'claim' then return take(ARGV[3], ARGV[4]) end
if op == 'lookup' then return holder(ARGV[3]) or false end
if op == 'guest' then -- a name nobody holds, not even us
  for _ = 1, 100 do
    local name = 'guest' .. redis.call('INCR', KEYS[3])
    if not holder(name) then take(name, name) return name end
  end
  return false
end
if op == 'release' and ARGV[3] then
  local held = redis.call('HGET', names, ARGV[3])
  if held and owner(held) == me then redis.call('HDEL', names, ARGV[3]) end
  return 1
end
local all = redis.call('HGETALL', names)
if op == 'who' then -- how many live names, and the first ARGV[3]
  local listed, count, live = {}, 0, {}
  for i = 1, #all, 2 do
    local server = owner(all[i + 1])
    if live[server] == nil then live[server] = alive(server) end
    if live[server] then
      count = count + 1
      if #listed < tonumber(ARGV[3]) then listed[#listed + 1] = shown(all[i + 1]) end
    end
  end
  return {count, listed}
end
if op == 'release' then -- all ours, and our lease: leaving the room
  for i = 1, #all, 2 do
    if owner(all[i + 1]) == me then redis.call('HDEL', names, all[i]) end
  end
  return redis.call('ZREM', servers, me)
end
if op == 'beat' then -- renew our lease; free the names of the dead
  local added, lost = redis.call('ZADD', servers, now + ARGV[3], me), {}
  local dead = redis.call('ZRANGEBYSCORE', servers, '-inf', now)
  if #dead > 0 then
    local gone = {}
    for _, server in ipairs(dead) do gone[server] = true end
    redis.call('ZREM', servers, unpack(dead))
    for i = 1, #all, 2 do
      if gone[owner(all[i + 1])] then
        redis.call('HDEL', names, all[i])
        lost[#lost + 1] = shown(all[i + 1])
      end
    end
  end
  return {added, redis.call('HLEN', names), lost}
end
if op == 'register' then -- ARGV[3] lease, then key, name…: all our names
  redis.call('ZADD', servers, now + ARGV[3], me)
  local mine, result = {}, {}
  for i = 4, #ARGV, 2 do mine[ARGV[i]] = true end
  for i = 1, #all, 2 do -- ours no more: they left while we were away
    if owner(all[i + 1]) == me and not mine[all[i]] then
      redis.call('HDEL', names, all[i])
    end
  end
  for i = 4, #ARGV, 2 do
    result[#result + 1] = take(ARGV[i], ARGV[i + 1])
    local n = tonumber(string.match(ARGV[i], '^guest(%d+)$'))
    if n and n > tonumber(redis.call('GET', KEYS[3]) or 0) then
      redis.call('SET', KEYS[3], n) -- a restarted Redis forgot the count
    end
  end
  return result
end`;
