using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>A graph: inputs, initializers, nodes in order, outputs. Nested graphs (attributes of
/// If/Loop/Scan/BeamSearch nodes) are Graphs too and may use values of enclosing graphs.</summary>
public sealed class Graph
{
    private readonly List<Node> _nodes = [];
    private readonly List<Value> _inputs = [];
    private readonly List<Value> _outputs = [];
    private readonly List<Value> _initializers = [];

    public Graph(string name = "main_graph")
    {
        Name = name;
        Extras = new GraphProto();
    }

    internal Graph(GraphProto extras, string name)
    {
        Extras = extras;
        Name = name;
    }

    public string Name { get; set; }

    public string? DocString
    {
        get => Extras.HasDocString ? Extras.DocString : null;
        set { if (value is null) Extras.ClearDocString(); else Extras.DocString = value; }
    }

    /// <summary>Fields the IR does not model (sparse_initializer, quantization_annotation,
    /// metadata_props, unknown fields), written back unchanged.</summary>
    internal GraphProto Extras { get; }

    /// <summary>The node whose attribute holds this graph; null for the main graph.</summary>
    public Node? ParentNode { get; internal set; }
    public Graph? Parent => ParentNode?.Graph;

    public IReadOnlyList<Node> Nodes => _nodes;
    public IReadOnlyList<Value> Inputs => _inputs;
    public IReadOnlyList<Value> Outputs => _outputs;
    public IReadOnlyList<Value> Initializers => _initializers;

    /// <summary>Input and output declarations as read (without names), parallel to
    /// <see cref="Inputs"/> and <see cref="Outputs"/>; null for ones added later.</summary>
    internal List<ValueInfoProto?> InputDecls { get; } = [];
    internal List<ValueInfoProto?> OutputDecls { get; } = [];

    /// <summary>Values with a value_info entry, in file order (kept for a lossless save).</summary>
    internal List<Value> ValueInfos { get; } = [];

    /// <summary>Values named in this graph but defined nowhere, and sparse initializers.</summary>
    internal List<Value> OtherValues { get; } = [];

    /// <summary>This graph and every graph nested in its nodes' attributes, depth first.</summary>
    public IEnumerable<Graph> SelfAndSubgraphs()
    {
        yield return this;
        foreach (var node in _nodes)
            foreach (var sub in node.Subgraphs)
                foreach (var g in sub.SelfAndSubgraphs())
                    yield return g;
    }

    /// <summary>Nodes of this graph and all nested graphs.</summary>
    public IEnumerable<Node> AllNodes() => SelfAndSubgraphs().SelectMany(g => g.Nodes);

    /// <summary>Every value defined in this graph's scope: inputs, initializers, node outputs.</summary>
    public IEnumerable<Value> Values()
    {
        foreach (var v in _inputs) yield return v;
        foreach (var v in _initializers) if (!v.IsGraphInput) yield return v;
        foreach (var n in _nodes) foreach (var o in n.Outputs) if (o is not null) yield return o;
    }

    /// <summary>Finds a value defined in this graph by name (not in enclosing graphs).</summary>
    public Value? FindValue(string name) => Values().FirstOrDefault(v => v.Name == name);

    /// <summary>Finds a value visible from this graph: this scope first, then enclosing graphs.</summary>
    public Value? Resolve(string name) => FindValue(name) ?? Parent?.Resolve(name);

    public Value? FindInitializer(string name) => _initializers.FirstOrDefault(v => v.Name == name);

    // ---- Inputs, outputs, initializers ----------------------------------------------------------

    public Value AddInput(string name, TensorDataType elementType, IEnumerable<Dim>? shape)
    {
        var value = new Value(this, name) { IsGraphInput = true };
        value.SetTensorType(elementType, shape);
        _inputs.Add(value);
        InputDecls.Add(null);
        return value;
    }

    internal void AddInputRaw(Value value, ValueInfoProto? decl)
    {
        value.IsGraphInput = true;
        _inputs.Add(value);
        InputDecls.Add(decl);
    }

    /// <summary>Adds a graph output (an extra model output for probes, say).</summary>
    public void AddOutput(Value value) => AddOutputRaw(value, null);

    internal void AddOutputRaw(Value value, ValueInfoProto? decl)
    {
        _outputs.Add(value);
        OutputDecls.Add(decl);
        value.AddUse(new Usage(null, this, _outputs.Count - 1));
    }

    public void SetOutput(int index, Value value)
    {
        var old = _outputs[index];
        old.RemoveUse(new Usage(null, this, index));
        _outputs[index] = value;
        OutputDecls[index] = null;
        value.AddUse(new Usage(null, this, index));
        if (old.Type is not null && value.Type is null) value.Type = old.Type;
    }

    public void RemoveOutput(int index)
    {
        for (int i = index; i < _outputs.Count; i++) _outputs[i].RemoveUse(new Usage(null, this, i));
        _outputs.RemoveAt(index);
        OutputDecls.RemoveAt(index);
        for (int i = index; i < _outputs.Count; i++) _outputs[i].AddUse(new Usage(null, this, i));
    }

    public Value AddInitializer(string name, Tensor tensor)
    {
        if (FindValue(name) is not null) throw new InvalidOperationException($"graph '{Name}' already defines a value '{name}'");
        var value = new Value(this, name) { ConstValue = tensor };
        _initializers.Add(value);
        return value;
    }

    internal void AddInitializerRaw(Value value) => _initializers.Add(value);

    /// <summary>Replaces an initializer's data (after an edit, or with a copy for a copy-on-write edit).</summary>
    public void SetInitializerData(Value initializer, Tensor tensor)
    {
        if (!_initializers.Contains(initializer)) throw new InvalidOperationException($"'{initializer.Name}' is not an initializer of graph '{Name}'");
        initializer.ConstValue = tensor;
    }

    public void RemoveInitializer(Value initializer)
    {
        if (initializer.Uses.Count > 0)
            throw new InvalidOperationException($"initializer '{initializer.Name}' is still used by {initializer.Uses.First()}");
        _initializers.Remove(initializer);
        initializer.ConstValue = null;
    }

    // ---- Nodes -----------------------------------------------------------------------------------

    public void Append(Node node) => Insert(_nodes.Count, node);

    public void InsertBefore(Node anchor, Node node) => Insert(IndexOf(anchor), node);

    public void InsertAfter(Node anchor, Node node) => Insert(IndexOf(anchor) + 1, node);

    private int IndexOf(Node anchor)
    {
        int i = anchor.Graph == this ? _nodes.IndexOf(anchor) : -1;
        return i >= 0 ? i : throw new InvalidOperationException($"{anchor.Describe()} is not in graph '{Name}'");
    }

    private void Insert(int index, Node node)
    {
        if (node.Graph is not null) throw new InvalidOperationException($"{node.Describe()} already belongs to graph '{node.Graph.Name}'");
        node.Graph = this;
        foreach (var output in node.Outputs)
            if (output is not null) output.Graph = this;
        node.AttachUses();
        _nodes.Insert(index, node);
    }

    internal void AppendRaw(Node node)
    {
        node.Graph = this;
        _nodes.Add(node);
    }

    /// <summary>Removes a node whose outputs are unused. Checks first, then changes everything or nothing.</summary>
    public void Remove(Node node)
    {
        IndexOf(node);
        foreach (var output in node.Outputs)
            if (output is { Uses.Count: > 0 })
                throw new InvalidOperationException($"cannot remove {node.Describe()}: output '{output.Name}' is used by {output.Uses.First()}");
        DetachRecursively(node);
        _nodes.Remove(node);
        node.Graph = null;
    }

    private static void DetachRecursively(Node node)
    {
        node.DetachUses();
        foreach (var sub in node.Subgraphs)
        {
            foreach (var inner in sub.Nodes) DetachRecursively(inner);
            for (int i = 0; i < sub._outputs.Count; i++) sub._outputs[i].RemoveUse(new Usage(null, sub, i));
        }
    }

    /// <summary>Removes nodes whose outputs reach no graph output (repeatedly, also inside subgraphs)
    /// and initializers nobody uses. Returns the number of nodes removed.</summary>
    public int RemoveDeadNodes()
    {
        int removed = 0;
        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            var node = _nodes[i];
            if (node.Outputs.All(o => o is null || o.Uses.Count == 0) && !HasSideEffects(node))
            {
                DetachRecursively(node);
                _nodes.RemoveAt(i);
                node.Graph = null;
                removed++;
            }
        }
        foreach (var node in _nodes)
            foreach (var sub in node.Subgraphs)
                removed += sub.RemoveDeadNodes();
        _initializers.RemoveAll(v => v.Uses.Count == 0 && !v.IsGraphInput && ClearConst(v));
        ValueInfos.RemoveAll(v => v.Producer is not null && v.Producer.Graph is null);
        return removed;

        static bool ClearConst(Value v) { v.ConstValue = null; return true; }
    }

    // A node with no outputs at all is kept: it exists for a reason we cannot see.
    private static bool HasSideEffects(Node node) => node.Outputs.All(o => o is null);

    /// <summary>Stable topological sort: keeps the current order where it is already valid. Values a
    /// nested graph reads from this graph count as inputs of the node holding it.</summary>
    public void TopologicalSort()
    {
        var position = new Dictionary<Node, int>();
        for (int i = 0; i < _nodes.Count; i++) position[_nodes[i]] = i;
        var pending = new Dictionary<Node, int>();
        var dependents = new Dictionary<Node, List<Node>>();
        foreach (var node in _nodes)
        {
            var producers = Dependencies(node).Where(p => p.Graph == this && p != node).Distinct().ToList();
            pending[node] = producers.Count;
            foreach (var p in producers)
            {
                if (!dependents.TryGetValue(p, out var list)) dependents[p] = list = [];
                list.Add(node);
            }
        }
        var ready = new PriorityQueue<Node, int>();
        foreach (var node in _nodes) if (pending[node] == 0) ready.Enqueue(node, position[node]);
        var sorted = new List<Node>(_nodes.Count);
        while (ready.TryDequeue(out var node, out _))
        {
            sorted.Add(node);
            if (!dependents.TryGetValue(node, out var list)) continue;
            foreach (var d in list)
                if (--pending[d] == 0) ready.Enqueue(d, position[d]);
        }
        if (sorted.Count != _nodes.Count)
        {
            var stuck = _nodes.First(n => pending[n] > 0);
            throw new InvalidOperationException($"graph '{Name}' has a cycle through {stuck.Describe()}");
        }
        _nodes.Clear();
        _nodes.AddRange(sorted);
    }

    /// <summary>Producers of a node's inputs, including values its subgraphs read from outer scopes.</summary>
    private static IEnumerable<Node> Dependencies(Node node)
    {
        foreach (var input in node.Inputs)
            if (input?.Producer is { } p) yield return p;
        foreach (var sub in node.Subgraphs)
            foreach (var inner in sub.AllNodes())
                foreach (var input in inner.Inputs)
                    if (input?.Producer is { } p) yield return p;
    }

    public override string ToString() => $"graph '{Name}' ({_nodes.Count} nodes)";
}
