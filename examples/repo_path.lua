-- repo_path.lua: lets the examples run from a checkout. Loaded first by each
-- of them; puts ../lua and the build of this Lua (next to this folder:
-- ../build for 5.4, ../build/lua5.3, ../build/lua5.1 or ../build/luajit, as
-- `make LUA=...` builds them) on the search paths, unless LUA_PATH /
-- LUA_CPATH already say where duplex is.
local dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local v = _VERSION:match("%d+%.%d+")
local build = dir .. "/../build"
if rawget(_G, "jit") then build = build .. "/luajit"
elseif v ~= "5.4" then build = build .. "/lua" .. v end
local suffix = "_" .. v:gsub("%.", "_")
if not (os.getenv("LUA_PATH" .. suffix) or os.getenv("LUA_PATH")) then
  package.path = dir .. "/../lua/?.lua;" .. dir .. "/../lua/?/init.lua;" .. package.path
end
if not (os.getenv("LUA_CPATH" .. suffix) or os.getenv("LUA_CPATH")) then
  package.cpath = build .. "/?.so;" .. package.cpath
end
