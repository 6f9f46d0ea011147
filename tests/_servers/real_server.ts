// What the real-server tests need to know about one server: where it
// listens, how it closes idle connections, and how to run one request on a
// borrowed connection with its reply checked byte for byte.
import * as fs from "node:fs";
import { findProgram, programVersion, serverDir, ServerProcess } from "./process.ts";
import type { ReplyReader } from "./reply_reader.ts";

export interface RealServer {
  /** The program's name, such as "nginx". */
  readonly name: string;
  /** What the program says its version is. */
  readonly version: string;
  readonly process: ServerProcess;
  readonly address: { hostname: string; port: number };
  /**
   * Milliseconds of idleness after which the server closes a connection:
   * the earliest and the latest it was seen to (from its timeout mechanism).
   */
  readonly idleClose: { readonly min: number; readonly max: number };
  /**
   * Sends request `id` on the reader's connection and reads its reply
   * completely; throws if any byte is not the reply to `id`.
   */
  exchange(reader: ReplyReader, id: number): Promise<void>;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

/** How to start one kind of server. */
export interface ServerRecipe {
  name: string;
  debianPackage: string;
  program: string;
  versionArgs: string[];
  /** The command line for `port`; may write config files into `dir`. */
  args(port: number, dir: string): string[];
  idleClose: RealServer["idleClose"];
  exchange: RealServer["exchange"];
}

/** Starts a server from its recipe on a free port of 127.0.0.1, in a new temporary directory. */
export async function startRealServer(recipe: ServerRecipe): Promise<RealServer> {
  const program = findProgram(recipe.program, recipe.debianPackage);
  const dir = serverDir(recipe.name);
  let server: ServerProcess;
  try {
    server = await ServerProcess.start(recipe.name, {
      program,
      args: (port) => recipe.args(port, dir),
    });
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    name: recipe.name,
    version: programVersion(program, recipe.versionArgs),
    process: server,
    address: { hostname: "127.0.0.1", port: server.port },
    idleClose: recipe.idleClose,
    exchange: recipe.exchange,
    async close() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
