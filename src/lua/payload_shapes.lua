-- ngx_worker_events.payload_shapes: the payload decoder's shape cache.
--
-- Most events of a deployment carry tables of the same few string keys
-- ({id=, op=, key=}, the bench's {n=, z=, p=}). The generic decoder
-- (ngx_worker_events.payload) makes each key a Lua string (lj_str_new: hash,
-- lookup, compare) and inserts it into a fresh table (lj_tab_newkey), which
-- is most of a small event's receive cost. A shape that has been decoded
-- HOT times gets its own decoder, made with loadstring: it compares the
-- key bytes in place and clones a template table of the shape's keys
-- (table.clone copies its nodes as they are: no hashing, no new keys), then
-- stores the values under constant keys.
--
--   local shapes = require("ngx_worker_events.payload_shapes").new(value)
--   local t, j = shapes.decode(nh, p, i, n, depth) -- j nil: not a known shape
--   shapes.seen(nh, k1, k2, k3, k4, more)          -- the generic decoder built one
--                                                  -- (more: keys 5 .. nh)
--
-- `value(p, i, n, depth)` is the generic decoder's value reader. A shape is a
-- table with no array part and 1 to MAX_KEYS string keys of up to MAX_KEY
-- bytes, in the order the bytes give them, whose values are no tables. Its
-- decoder hands back nil (and the generic decoder takes over) for anything
-- else: other key bytes, a table value, a value it refuses, or a nil value
-- (the generic decoder leaves those keys out). As it never decodes a
-- table, what it decoded before handing back is a few scalars, which the
-- generic decoder decodes again: linear in the bytes, however deep the
-- payload nests tables (a shape that decoded nested tables and then gave
-- up would decode them again at every level: 2^depth).
-- The table it builds has the same keys and values and the same node layout
-- (so the same pairs() order) as the generic decoder's: the template is
-- built the way that decoder builds a table (table.new(0, nh), then the keys
-- in the payload's order). Not a table constructor: LuaJIT grows a
-- constructor's template key by key, and its rehashes lay the nodes out in
-- another order in some processes (string ids are random).
--
-- Bounded: MAX_SHAPES decoders per VM, PER_COUNT per key count (tried in
-- the order they were made), MAX_SEEN nodes in the tree that counts shapes
-- not yet hot. Past those bounds tables take the generic decoder.
local loadstring, concat, byte, format = loadstring, table.concat, string.byte, string.format
local type = type
local ok_new, new_tab = pcall(require, "table.new")
local ok_clone, clone = pcall(require, "table.clone")

local MAX_KEY = 32
local MAX_KEYS = 16
local HOT = 16
local PER_COUNT = 4
local MAX_SHAPES = 32
local MAX_SEEN = 512

local _M = {}

-- a Lua string literal of s: every byte as a decimal escape
local function literal(s)
  local out = {}
  for j = 1, #s do out[j] = format("\\%d", byte(s, j)) end
  return '"' .. concat(out) .. '"'
end

-- the source of the decoder of a shape with keys ks[1..#ks]
local function source(ks)
  local src = { "local value, clone, template = ...\nreturn function(p, i, n, depth)\n" }
  local fields = {}
  for j, k in ipairs(ks) do
    local len = #k
    -- the key's bytes, and a value after them that is no table
    local test = { format("i + %d >= n or p[i] ~= 6 or p[i + 1] ~= %d", len + 2, len) }
    for b = 1, len do
      test[#test + 1] = format("p[i + %d] ~= %d", b + 1, byte(k, b))
    end
    test[#test + 1] = format("p[i + %d] == 7", len + 2)
    src[#src + 1] = format("  if %s then return nil, nil end\n", concat(test, " or "))
    src[#src + 1] = format("  local v%d\n  v%d, i = value(p, i + %d, n, depth)\n", j, j, len + 2)
    src[#src + 1] = format("  if not i or v%d == nil then return nil, nil end\n", j)
    fields[j] = format("[%s] = v%d", literal(k), j)
  end
  src[#src + 1] = "  local t = clone(template)\n"
  for j = 1, #fields do src[#src + 1] = format("  t%s\n", fields[j]) end
  src[#src + 1] = "  return t, i\nend\n"
  return concat(src)
end

function _M.new(value)
  local self = {}
  local lists, tree = {}, {} -- per key count: the shapes' decoders; k1 -> k2 -> ... -> decodes seen
  for nh = 1, MAX_KEYS do lists[nh], tree[nh] = {}, {} end
  local made, nodes = 0, 0

  -- the table at p[i] (after its counts) if it has a known shape: table,
  -- next index; nil, nil otherwise. Unrolled: a loop of a few trips on every
  -- event's path aborts the dispatch loop's traces.
  function self.decode(nh, p, i, n, depth)
    local l = lists[nh]
    local f = l[1]
    if not f then return nil, nil end
    local t, j = f(p, i, n, depth)
    if j then return t, j end
    f = l[2]
    if not f then return nil, nil end
    t, j = f(p, i, n, depth)
    if j then return t, j end
    f = l[3]
    if not f then return nil, nil end
    t, j = f(p, i, n, depth)
    if j then return t, j end
    f = l[4]
    if not f then return nil, nil end
    return f(p, i, n, depth)
  end

  local function make(ks)
    local l = lists[#ks]
    if made >= MAX_SHAPES or #l >= PER_COUNT then return end
    local chunk = loadstring(source(ks), "=ngx_worker_events.payload_shapes")
    if not chunk then return end
    -- built as the generic decoder builds it (table.new, then the keys in
    -- order): a clone has its node layout, so its pairs() order
    local template = new_tab(0, #ks)
    for j = 1, #ks do template[ks[j]] = true end
    made = made + 1
    l[#l + 1] = chunk(value, clone, template)
  end

  -- the generic decoder built a table of these nh keys (no array part, no
  -- key left out; keys 5 .. nh in `more`): counted, and made a shape when hot
  function self.seen(nh, k1, k2, k3, k4, more)
    local l = lists[nh]
    if made >= MAX_SHAPES or l == nil or #l >= PER_COUNT or not (ok_new and ok_clone) then return end
    local ks = { k1, k2, k3, k4 }
    for j = 5, nh do ks[j] = more[j - 4] end
    local node = tree[nh]
    for j = 1, nh do
      local k = ks[j]
      if type(k) ~= "string" or #k > MAX_KEY then return end
      local nxt = node[k]
      if j == nh then
        nxt = (nxt or 0) + 1
        if nxt == 1 then
          if nodes >= MAX_SEEN then return end
          nodes = nodes + 1
        end
        node[k] = nxt
        if nxt == HOT then make(ks) end
      elseif nxt == nil then
        if nodes >= MAX_SEEN then return end
        nodes = nodes + 1
        nxt = {}
        node[k] = nxt
      end
      node = nxt
    end
  end

  -- how many shapes have their own decoder
  function self.count()
    return made
  end

  return self
end

return _M
