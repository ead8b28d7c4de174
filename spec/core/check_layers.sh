#!/usr/bin/env bash
# The binding in layers: every csrc/l*.c is named in LAYERS (lowest
# first), and a file calls only into files named before it; lduplex.c, the
# module's entry, comes last. Each file is compiled alone and its calls are
# read from its symbols (nm), so a call through any header is seen.
# Then a call planted from the lowest layer into the highest must fail the
# check, or the check proves nothing.
#   check_layers.sh "CC CFLAGS" layer...
set -u
cc=$1
shift
layers=("$@")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

listed=$(printf '%s\n' "${layers[@]}" | sort)
present=$(ls csrc/l*.c | sed 's|csrc/||; s|\.c$||' | sort)
if [ "$listed" != "$present" ]; then
  echo "check-layers: LAYERS and csrc/l*.c differ:"
  diff <(echo "$listed") <(echo "$present")
  exit 1
fi

for f in "${layers[@]}"; do
  $cc -c -o "$dir/$f.o" "csrc/$f.c" || exit 1
done

# check OBJDIR: every call between binding files goes down the layers.
check() {
  local objs=$1 bad=0 i f
  declare -A rank owner
  for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done
  for f in "${layers[@]}"; do
    while read -r sym; do owner[$sym]=$f; done < <(nm --defined-only -g "$objs/$f.o" | awk '{print $3}')
  done
  for f in "${layers[@]}"; do
    while read -r sym; do
      local to=${owner[$sym]:-}
      [ -n "$to" ] && [ "$to" != "$f" ] || continue
      if [ "${rank[$to]}" -gt "${rank[$f]}" ]; then
        echo "check-layers: $f.c calls up into $to.c ($sym)"
        bad=1
      fi
    done < <(nm -u "$objs/$f.o" | awk '{print $2}')
  done
  return $bad
}

check "$dir" || exit 1

# The planted call: the lowest layer's object also calls the highest's
# open function.
low=${layers[0]}
top=${layers[$((${#layers[@]} - 1))]}
sym=$(nm --defined-only -g "$dir/$top.o" | awk '{print $3; exit}')
mkdir "$dir/planted"
cp "$dir"/*.o "$dir/planted/"
printf 'extern int %s(void);\nint lx_planted(void);\nint lx_planted(void) { return %s(); }\n' "$sym" "$sym" > "$dir/plant.c"
$cc -c -o "$dir/plant.o" "$dir/plant.c" || exit 1
ld -r -o "$dir/planted/$low.o" "$dir/$low.o" "$dir/plant.o" || exit 1
if check "$dir/planted" > "$dir/planted.txt"; then
  echo "check-layers: a call planted from $low.c into $top.c ($sym) was not seen"
  exit 1
fi
echo "binding layers: ${layers[*]} (a planted upward call is refused)"
