// The inference tree drawn with React Flow, laid out top-down by dagre. Loaded lazily: it is the
// largest part of the bundle and only the graph pages need it.

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  type Edge,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import "@xyflow/react/dist/style.css";
import type { PlanTree, StepState } from "../planTree";

const NODE_WIDTH = 230;
const NODE_HEIGHT = 62;

type StepNodeData = { flowIndex: string; sequence: string; concept: string; state: StepState | undefined };
type StepNode = Node<StepNodeData, "step">;

function StepNodeView({ data, selected }: NodeProps<StepNode>) {
  return (
    <div
      className={`step-node state-${data.state ?? "none"}${selected ? " selected" : ""}`}
      title={`${data.flowIndex} ${data.concept}`}
    >
      <Handle id="TB" type="target" position={Position.Top} isConnectable={false} />
      <Handle id="LR" type="target" position={Position.Left} isConnectable={false} />
      <div className="step-node-head">
        <span className="flow-index">{data.flowIndex}</span>
        <span className="sequence">{data.sequence}</span>
        {data.state && <span className="step-state">{data.state}</span>}
      </div>
      <div className="step-node-concept">{data.concept}</div>
      <Handle id="TB" type="source" position={Position.Bottom} isConnectable={false} />
      <Handle id="LR" type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

const nodeTypes = { step: StepNodeView };

interface Layout {
  positions: Map<string, { x: number; y: number }>;
  edges: Edge[];
  width: number;
  height: number;
  direction: "TB" | "LR";
}

function layout(tree: PlanTree, direction: "TB" | "LR"): Layout {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: direction, nodesep: 24, ranksep: direction === "TB" ? 48 : 64, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const step of tree.steps) g.setNode(step.flowIndex, { width: NODE_WIDTH, height: NODE_HEIGHT });
  const edges: Edge[] = [];
  for (const step of tree.steps) {
    if (step.parent === null) continue;
    g.setEdge(step.parent, step.flowIndex);
    edges.push({
      id: `${step.parent}->${step.flowIndex}`,
      source: step.parent,
      target: step.flowIndex,
      sourceHandle: direction,
      targetHandle: direction,
    });
  }
  dagre.layout(g);
  const positions = new Map<string, { x: number; y: number }>();
  for (const step of tree.steps) {
    const n = g.node(step.flowIndex);
    positions.set(step.flowIndex, { x: n.x - NODE_WIDTH / 2, y: n.y - NODE_HEIGHT / 2 });
  }
  const { width = 0, height = 0 } = g.graph();
  return { positions, edges, width, height, direction };
}

/** Broad trees read better left-to-right, deep ones top-down: keep whichever fits the canvas
 * larger. The current choice only changes for a clearly better one, so small resizes (a scrollbar
 * appearing) never flip the drawing back and forth. */
function pickLayout(layouts: Layout[], aspect: number, current: Layout["direction"] | null): Layout {
  const scale = (l: Layout) => Math.min(aspect / Math.max(l.width, 1), 1 / Math.max(l.height, 1));
  const best = layouts.reduce((a, b) => (scale(b) > scale(a) ? b : a));
  const kept = layouts.find((l) => l.direction === current);
  return kept && scale(best) < scale(kept) * 1.25 ? kept : best;
}

export interface PlanGraphProps {
  tree: PlanTree;
  states?: Record<string, StepState>;
  selected: string | null;
  onSelect: (flowIndex: string | null) => void;
}

export default function PlanGraph({ tree, states, selected, onSelect }: PlanGraphProps) {
  const container = useRef<HTMLDivElement>(null);
  const [aspect, setAspect] = useState(1.6);
  useEffect(() => {
    const el = container.current;
    if (!el) return;
    const observer = new ResizeObserver(() => {
      if (el.clientHeight > 0) setAspect(Math.round((el.clientWidth / el.clientHeight) * 4) / 4);
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const layouts = useMemo(() => [layout(tree, "TB"), layout(tree, "LR")], [tree]);
  const chosen = useRef<Layout["direction"] | null>(null);
  const { positions, edges, direction } = useMemo(() => pickLayout(layouts, aspect, chosen.current), [layouts, aspect]);
  chosen.current = direction;

  const nodes: StepNode[] = useMemo(
    () =>
      tree.steps.map((step) => ({
        id: step.flowIndex,
        type: "step",
        position: positions.get(step.flowIndex) ?? { x: 0, y: 0 },
        data: {
          flowIndex: step.flowIndex,
          sequence: step.sequence,
          concept: step.concept,
          state: states?.[step.flowIndex],
        },
        selected: step.flowIndex === selected,
        draggable: false,
        connectable: false,
        ariaLabel: `Step ${step.flowIndex}: ${step.concept}${states?.[step.flowIndex] ? `, ${states[step.flowIndex]}` : ""}`,
      })),
    [tree, positions, states, selected],
  );

  const styledEdges = useMemo(
    () =>
      edges.map((edge) => ({
        ...edge,
        className: states?.[edge.target] ? `edge-${states[edge.target]}` : undefined,
        animated: states?.[edge.target] === "running",
      })),
    [edges, states],
  );

  const onNodeClick = useCallback((_: unknown, node: Node) => onSelect(node.id), [onSelect]);

  return (
    <div
      className="graph-canvas"
      data-testid="plan-graph"
      data-direction={direction}
      ref={container}
      onKeyDown={(event) => {
        // Nodes take focus with Tab; Enter or Space on one opens its details, as a click does.
        const node = (event.target as HTMLElement).closest?.(".react-flow__node");
        if (node && (event.key === "Enter" || event.key === " ")) {
          const id = node.getAttribute("data-id");
          if (id) onSelect(id);
        }
      }}
    >
      <ReactFlow<StepNode>
        key={direction}
        nodes={nodes}
        edges={styledEdges}
        nodeTypes={nodeTypes}
        onNodeClick={onNodeClick}
        onPaneClick={() => onSelect(null)}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable
        fitView
        fitViewOptions={{ padding: 0.15, maxZoom: 1.2 }}
        minZoom={0.1}
      >
        <Background gap={20} />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
