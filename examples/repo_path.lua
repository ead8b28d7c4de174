-- repo_path.lua: lets the examples run from a checkout. Loaded first by each
-- of them; puts ../lua and ../build (next to this folder) on the search
-- paths, unless LUA_PATH / LUA_CPATH already say where duplex is.
local dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
if not (os.getenv("LUA_PATH_5_4") or os.getenv("LUA_PATH")) then
  package.path = dir .. "/../lua/?.lua;" .. dir .. "/../lua/?/init.lua;" .. package.path
end
if not (os.getenv("LUA_CPATH_5_4") or os.getenv("LUA_CPATH")) then
  package.cpath = dir .. "/../build/?.so;" .. package.cpath
end
