#!/bin/sh
# Stands in for node_modules/.bin/node (scripts/postinstall.mjs links it
# there): npm links the pinned Node 22 there, which would make `node` in every
# npm script Node 22. This runs the node that runs npm instead, or outside
# npm the next `node` on PATH.
if [ -n "$npm_node_execpath" ] && [ -x "$npm_node_execpath" ] && [ ! "$npm_node_execpath" -ef "$0" ]; then
  exec "$npm_node_execpath" "$@"
fi
IFS=:
for dir in $PATH; do
  if [ -n "$dir" ] && [ -x "$dir/node" ] && [ ! "$dir/node" -ef "$0" ]; then
    exec "$dir/node" "$@"
  fi
done
echo "node_modules/.bin/node: no node on PATH but this stand-in" >&2
exit 127
