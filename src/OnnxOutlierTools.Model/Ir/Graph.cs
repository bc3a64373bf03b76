using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>A graph: inputs, initializers, nodes in order, outputs. Nested graphs (attributes of
/// If/Loop/Scan/BeamSearch nodes) are Graphs too and may use values of enclosing graphs.</summary>
public sealed class Graph
{
    // Nodes in order as a doubly linked list (Node.PrevInGraph/NextInGraph): insert and remove are O(1).
    // The indexable view is an array rebuilt on the first index access after an edit.
    private Node? _first, _last;
    private int _nodeCount;
    private Node[]? _nodeArray;
    private readonly NodeList _nodeList;
    // Values of this scope by name, built on the first lookup and kept up to date by every edit after it.
    private Dictionary<string, NameEntry>? _byName;
    private readonly List<Value> _inputs = [];
    private readonly List<Value> _outputs = [];
    private readonly List<Value> _initializers = [];

    public Graph(string name = "main_graph")
    {
        Name = name;
        Extras = new GraphProto();
        _nodeList = new NodeList(this);
    }

    internal Graph(GraphProto extras, string name)
    {
        Extras = extras;
        Name = name;
        _nodeList = new NodeList(this);
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

    /// <summary>The nodes in order. Enumerating walks the list (a node removed meanwhile still leads to the
    /// one after it); indexing uses an array rebuilt once after each batch of edits.</summary>
    public IReadOnlyList<Node> Nodes => _nodeList;
    public IReadOnlyList<Value> Inputs => _inputs;
    public IReadOnlyList<Value> Outputs => _outputs;
    public IReadOnlyList<Value> Initializers => _initializers;

    /// <summary>Input and output declarations as read (without names), parallel to
    /// <see cref="Inputs"/> and <see cref="Outputs"/>; null for ones added later.</summary>
    internal List<ValueInfoProto?> InputDecls { get; } = [];
    internal List<ValueInfoProto?> OutputDecls { get; } = [];

    /// <summary>Values with a value_info entry, in file order (kept for a lossless save).</summary>
    internal ValueInfoList ValueInfos { get; } = new();

    /// <summary>Values named in this graph but defined nowhere, and sparse initializers.</summary>
    internal List<Value> OtherValues { get; } = [];

    /// <summary>This graph and every graph nested in its nodes' attributes, depth first.</summary>
    public IEnumerable<Graph> SelfAndSubgraphs()
    {
        yield return this;
        foreach (var node in _nodeList)
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
        foreach (var n in _nodeList) foreach (var o in n.Outputs) if (o is not null) yield return o;
    }

    /// <summary>Finds a value defined in this graph by name (not in enclosing graphs); when several values
    /// share the name, the first in <see cref="Values"/> order. O(1): a name index built on the first call.</summary>
    public Value? FindValue(string name)
    {
        var index = NameIndex();
        if (!index.TryGetValue(name, out var entry)) return null;
        if (entry.Only is { } only) return only;
        // Several values of this name (or one left after a removal): the scan decides, as it always did.
        var first = Values().FirstOrDefault(v => v.Name == name);
        if (entry.Count == 1 && first is not null) index[name] = new NameEntry(first, 1);
        return first;
    }

    /// <summary>Values with one name: the value itself while it is the only one (Only is null otherwise).</summary>
    private readonly record struct NameEntry(Value? Only, int Count);

    private Dictionary<string, NameEntry> NameIndex()
    {
        if (_byName is not null) return _byName;
        _byName = new Dictionary<string, NameEntry>(StringComparer.Ordinal);
        foreach (var v in Values()) Register(v);
        return _byName;
    }

    /// <summary>A value joined this scope (input, initializer or output of a node in it).</summary>
    internal void Register(Value value)
    {
        if (_byName is null || value.InNameIndex) return;
        value.InNameIndex = true;
        ref var entry = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_byName, value.Name, out bool existed);
        entry = existed ? new NameEntry(null, entry.Count + 1) : new NameEntry(value, 1);
    }

    /// <summary>A value left this scope.</summary>
    private void Unregister(Value value)
    {
        if (_byName is null || !value.InNameIndex) return;
        value.InNameIndex = false;
        Forget(value.Name);
    }

    private void Forget(string name)
    {
        if (!_byName!.TryGetValue(name, out var entry)) return;
        if (entry.Count <= 1) _byName.Remove(name);
        else _byName[name] = new NameEntry(null, entry.Count - 1); // the remaining one is found by the next lookup
    }

    /// <summary>Called by <see cref="Value.Name"/> when a value of this scope is renamed.</summary>
    internal void Renamed(Value value, string oldName)
    {
        if (_byName is null || !value.InNameIndex) return;
        Forget(oldName);
        value.InNameIndex = false;
        Register(value);
    }

    /// <summary>Finds a value visible from this graph: this scope first, then enclosing graphs.</summary>
    public Value? Resolve(string name) => FindValue(name) ?? Parent?.Resolve(name);

    public Value? FindInitializer(string name)
    {
        // The index answers when the name is unique in this scope; otherwise the scan keeps the old answer.
        if (FindValue(name) is not { } v) return null;
        if (v.IsInitializer && v.Graph == this && _byName!.TryGetValue(name, out var entry) && entry.Count == 1) return v;
        return _initializers.FirstOrDefault(i => i.Name == name);
    }

    // ---- Inputs, outputs, initializers ----------------------------------------------------------

    public Value AddInput(string name, TensorDataType elementType, IEnumerable<Dim>? shape)
    {
        var value = new Value(this, name) { IsGraphInput = true };
        value.SetTensorType(elementType, shape);
        _inputs.Add(value);
        InputDecls.Add(null);
        Register(value);
        return value;
    }

    internal void AddInputRaw(Value value, ValueInfoProto? decl)
    {
        value.IsGraphInput = true;
        _inputs.Add(value);
        InputDecls.Add(decl);
        Register(value);
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
        Register(value);
        return value;
    }

    internal void AddInitializerRaw(Value value)
    {
        _initializers.Add(value);
        Register(value);
    }

    /// <summary>Replaces an initializer's data (after an edit, or with a copy for a copy-on-write edit).</summary>
    public void SetInitializerData(Value initializer, Tensor tensor)
    {
        // An initializer of this graph is a value of its scope with data (removal clears the data).
        if (initializer.Graph != this || !initializer.IsInitializer) throw new InvalidOperationException($"'{initializer.Name}' is not an initializer of graph '{Name}'");
        initializer.ConstValue = tensor;
    }

    public void RemoveInitializer(Value initializer)
    {
        if (initializer.Uses.Count > 0)
            throw new InvalidOperationException($"initializer '{initializer.Name}' is still used by {initializer.Uses.First()}");
        // Searched from the end: a pass usually removes what it added last.
        int i = _initializers.LastIndexOf(initializer);
        if (i >= 0)
        {
            _initializers.RemoveAt(i);
            if (!initializer.IsGraphInput) Unregister(initializer);
        }
        initializer.ConstValue = null;
    }

    // ---- Nodes -----------------------------------------------------------------------------------

    public void Append(Node node) => Link(node, _last);

    public void InsertBefore(Node anchor, Node node) => Link(node, Member(anchor).PrevInGraph);

    public void InsertAfter(Node anchor, Node node) => Link(node, Member(anchor));

    private Node Member(Node anchor) =>
        anchor.Graph == this ? anchor : throw new InvalidOperationException($"{anchor.Describe()} is not in graph '{Name}'");

    /// <summary>Adds a detached node after <paramref name="after"/> (null = first).</summary>
    private void Link(Node node, Node? after)
    {
        if (node.Graph is not null) throw new InvalidOperationException($"{node.Describe()} already belongs to graph '{node.Graph.Name}'");
        node.Graph = this;
        foreach (var output in node.Outputs)
            if (output is not null) output.Graph = this;
        node.AttachUses();
        LinkRaw(node, after);
        foreach (var output in node.Outputs)
            if (output is not null) Register(output);
    }

    private void LinkRaw(Node node, Node? after)
    {
        var before = after is null ? _first : after.NextInGraph;
        node.PrevInGraph = after;
        node.NextInGraph = before;
        if (after is null) _first = node; else after.NextInGraph = node;
        if (before is null) _last = node; else before.PrevInGraph = node;
        _nodeCount++;
        _nodeArray = null;
    }

    /// <summary>Takes a node out of the list. Its NextInGraph is kept, so an enumeration standing on it
    /// goes on with the node that followed it.</summary>
    private void Unlink(Node node)
    {
        var prev = node.PrevInGraph;
        var next = node.NextInGraph;
        if (prev is null) _first = next; else prev.NextInGraph = next;
        if (next is null) _last = prev; else next.PrevInGraph = prev;
        node.PrevInGraph = null;
        _nodeCount--;
        _nodeArray = null;
        node.Graph = null;
        foreach (var output in node.Outputs)
            if (output is not null) Unregister(output);
    }

    internal void AppendRaw(Node node)
    {
        node.Graph = this;
        LinkRaw(node, _last);
        foreach (var output in node.Outputs)
            if (output is not null) Register(output);
    }

    /// <summary>Removes a node whose outputs are unused. Checks first, then changes everything or nothing.</summary>
    public void Remove(Node node)
    {
        Member(node);
        foreach (var output in node.Outputs)
            if (output is { Uses.Count: > 0 })
                throw new InvalidOperationException($"cannot remove {node.Describe()}: output '{output.Name}' is used by {output.Uses.First()}");
        DetachRecursively(node);
        Unlink(node);
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
        for (var node = _last; node is not null;)
        {
            var prev = node.PrevInGraph;
            if (node.Outputs.All(o => o is null || o.Uses.Count == 0) && !HasSideEffects(node))
            {
                DetachRecursively(node);
                Unlink(node);
                removed++;
            }
            node = prev;
        }
        foreach (var node in _nodeList)
            foreach (var sub in node.Subgraphs)
                removed += sub.RemoveDeadNodes();
        _initializers.RemoveAll(v => v.Uses.Count == 0 && !v.IsGraphInput && ClearConst(v));
        ValueInfos.RemoveAll(v => v.Producer is not null && v.Producer.Graph is null);
        return removed;

        bool ClearConst(Value v) { v.ConstValue = null; Unregister(v); return true; }
    }

    // A node with no outputs at all is kept: it exists for a reason we cannot see.
    private static bool HasSideEffects(Node node) => node.Outputs.All(o => o is null);

    /// <summary>Stable topological sort: keeps the current order where it is already valid. Values a
    /// nested graph reads from this graph count as inputs of the node holding it.</summary>
    public void TopologicalSort()
    {
        var nodes = NodeArray();
        var position = new Dictionary<Node, int>();
        for (int i = 0; i < nodes.Length; i++) position[nodes[i]] = i;
        var pending = new Dictionary<Node, int>();
        var dependents = new Dictionary<Node, List<Node>>();
        foreach (var node in nodes)
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
        foreach (var node in nodes) if (pending[node] == 0) ready.Enqueue(node, position[node]);
        var sorted = new List<Node>(nodes.Length);
        while (ready.TryDequeue(out var node, out _))
        {
            sorted.Add(node);
            if (!dependents.TryGetValue(node, out var list)) continue;
            foreach (var d in list)
                if (--pending[d] == 0) ready.Enqueue(d, position[d]);
        }
        if (sorted.Count != nodes.Length)
        {
            var stuck = nodes.First(n => pending[n] > 0);
            throw new InvalidOperationException($"graph '{Name}' has a cycle through {stuck.Describe()}");
        }
        Node? previous = null;
        foreach (var node in sorted)
        {
            node.PrevInGraph = previous;
            if (previous is null) _first = node; else previous.NextInGraph = node;
            previous = node;
        }
        _last = previous;
        if (previous is not null) previous.NextInGraph = null;
        _nodeArray = null;
    }

    private Node[] NodeArray()
    {
        if (_nodeArray is not null) return _nodeArray;
        var array = new Node[_nodeCount];
        int i = 0;
        for (var n = _first; n is not null; n = n.NextInGraph) array[i++] = n;
        return _nodeArray = array;
    }

    /// <summary>The read-only, indexable view of the node list.</summary>
    private sealed class NodeList(Graph graph) : IReadOnlyList<Node>
    {
        public int Count => graph._nodeCount;
        public Node this[int index] => graph.NodeArray()[index];

        public IEnumerator<Node> GetEnumerator()
        {
            for (var n = graph._first; n is not null; n = n.NextInGraph)
            {
                yield return n;
                // A node removed while the caller held it keeps its NextInGraph: carry on from there,
                // skipping nodes removed meanwhile as well.
                while (n.NextInGraph is { } next && next.Graph != graph) n = next;
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
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

    public override string ToString() => $"graph '{Name}' ({_nodeCount} nodes)";
}

/// <summary>The value_info entries of a graph in file order; each value counts its own entries, so the
/// membership test is O(1) and removing the entry just added is too.</summary>
internal sealed class ValueInfoList : IEnumerable<Value>
{
    private readonly List<Value> _items = [];

    public int Count => _items.Count;

    public void Add(Value value)
    {
        _items.Add(value);
        value.ValueInfoEntries++;
    }

    public bool Contains(Value value) => value.ValueInfoEntries > 0;

    /// <summary>Removes the first entry of <paramref name="value"/> (as List.Remove does).</summary>
    public bool Remove(Value value)
    {
        if (value.ValueInfoEntries == 0) return false;
        // One entry: the last one is the first one, and usually was just added.
        int i = value.ValueInfoEntries == 1 ? _items.LastIndexOf(value) : _items.IndexOf(value);
        if (i < 0) return false;
        _items.RemoveAt(i);
        value.ValueInfoEntries--;
        return true;
    }

    public int RemoveAll(Predicate<Value> match) => _items.RemoveAll(v =>
    {
        if (!match(v)) return false;
        v.ValueInfoEntries--;
        return true;
    });

    public List<Value>.Enumerator GetEnumerator() => _items.GetEnumerator();
    IEnumerator<Value> IEnumerable<Value>.GetEnumerator() => GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
