using Onnx.Protobuf;

namespace OnnxOutlierTools.Ir;

/// <summary>An operator application. Inputs may be null (an omitted optional input, "" in ONNX);
/// outputs may be null (an output the model does not request).</summary>
public sealed class Node
{
    // Exact-size arrays (most nodes never change arity; the rare append reallocates).
    private Value?[] _inputs;
    private Value?[] _outputs;
    private List<Attr>? _attributes; // null while there are none (most nodes)
    private NodeProto? _extras;       // null when the file had nothing beyond name, op_type, domain
    private readonly NodeFields _present;

    /// <summary>Creates a node (not yet in a graph) whose outputs are new values named
    /// <paramref name="outputNames"/> (null entries are absent outputs).</summary>
    public Node(string domain, string opType, IEnumerable<Value?> inputs, IEnumerable<string?> outputNames,
        IEnumerable<Attr>? attributes = null, string? name = null)
    {
        Domain = domain;
        OpType = opType;
        Name = name ?? "";
        _inputs = inputs.ToArray();
        var names = outputNames.ToArray();
        _outputs = new Value?[names.Length];
        for (int i = 0; i < names.Length; i++) _outputs[i] = names[i] is null ? null : NewOutput(names[i]!, i);
        if (attributes is not null)
            foreach (var a in attributes) (_attributes ??= []).Add(a);
    }

    /// <summary>A node read from a file. <paramref name="extras"/> is null when the NodeProto held nothing
    /// but the fields in <paramref name="present"/> (the usual case), which then need no protobuf kept.</summary>
    internal Node(NodeProto? extras, NodeFields present, string domain, string opType, string name, int inputs, int outputs)
    {
        _extras = extras;
        _present = present;
        Domain = domain;
        OpType = opType;
        Name = name;
        _inputs = inputs == 0 ? [] : new Value?[inputs];
        _outputs = outputs == 0 ? [] : new Value?[outputs];
    }

    /// <summary>The operator domain as written ("" and "ai.onnx" both mean the default domain).</summary>
    public string Domain { get; set; }
    public string OpType { get; set; }
    /// <summary>The node name ("" when the model has none).</summary>
    public string Name { get; set; }

    public string? DocString
    {
        get => _extras is { HasDocString: true } e ? e.DocString : null;
        set
        {
            if (value is not null) (_extras ??= Bare()).DocString = value;
            else _extras?.ClearDocString();
        }
    }

    /// <summary>The node's metadata_props entries in order (provenance among them, see <see cref="NodeOrigin"/>).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Metadata =>
        _extras is null ? [] : _extras.MetadataProps.Select(m => new KeyValuePair<string, string>(m.Key, m.Value)).ToArray();

    public string? GetMetadata(string key) => _extras?.MetadataProps.FirstOrDefault(m => m.Key == key)?.Value;

    /// <summary>Sets metadata_props entry <paramref name="key"/> (replacing it in place if present); null removes it.</summary>
    public void SetMetadata(string key, string? value)
    {
        var entry = _extras?.MetadataProps.FirstOrDefault(m => m.Key == key);
        if (value is null)
        {
            if (entry is not null) _extras!.MetadataProps.Remove(entry);
            return;
        }
        if (entry is not null) entry.Value = value;
        else (_extras ??= Bare()).MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
    }

    /// <summary>A copy of the fields the IR does not model (doc_string, overload, metadata_props, device
    /// configurations, unknown fields), written back unchanged, with name, op_type and domain as read
    /// (which of them the file set: proto2 presence survives a round trip).</summary>
    internal NodeProto CopyExtras() => _extras?.Clone() ?? Bare();

    private NodeProto Bare()
    {
        var proto = new NodeProto();
        if ((_present & NodeFields.Name) != 0) proto.Name = Name;
        if ((_present & NodeFields.OpType) != 0) proto.OpType = OpType;
        if ((_present & NodeFields.Domain) != 0) proto.Domain = Domain;
        return proto;
    }

    /// <summary>The graph that holds this node; null while detached.</summary>
    public Graph? Graph { get; internal set; }

    /// <summary>Neighbours in the graph's node list (see Graph.Nodes); a removed node keeps its next.</summary>
    internal Node? PrevInGraph { get; set; }
    internal Node? NextInGraph { get; set; }

    public IReadOnlyList<Value?> Inputs => _inputs;
    public IReadOnlyList<Value?> Outputs => _outputs;
    public IReadOnlyList<Attr> Attributes => (IReadOnlyList<Attr>?)_attributes ?? [];

    public bool IsDefaultDomain => Domain is "" or "ai.onnx";

    /// <summary>True for <paramref name="opType"/> in <paramref name="domain"/> ("" = the default domain).</summary>
    public bool Is(string opType, string domain = "") =>
        OpType == opType && (domain is "" or "ai.onnx" ? IsDefaultDomain : Domain == domain);

    public Attr? GetAttribute(string name) => _attributes?.FirstOrDefault(a => a.Name == name);
    public long GetInt(string name, long fallback) => GetAttribute(name)?.AsInt() ?? fallback;
    public float GetFloat(string name, float fallback) => GetAttribute(name)?.AsFloat() ?? fallback;
    public string? GetString(string name) => GetAttribute(name)?.AsString();

    public void SetAttribute(Attr attribute)
    {
        _attributes ??= [];
        int i = _attributes.FindIndex(a => a.Name == attribute.Name);
        if (i >= 0) _attributes[i] = attribute; else _attributes.Add(attribute);
    }

    public bool RemoveAttribute(string name) => _attributes is not null && _attributes.RemoveAll(a => a.Name == name) > 0;

    internal void AddAttributeRaw(Attr attribute) => (_attributes ??= []).Add(attribute);

    /// <summary>Subgraphs held in this node's attributes.</summary>
    public IEnumerable<Graph> Subgraphs => _attributes is null ? [] : _attributes.SelectMany(a => a.Graphs);

    public Value? Input(int index) => index < _inputs.Length ? _inputs[index] : null;
    public Value? Output(int index) => index < _outputs.Length ? _outputs[index] : null;

    /// <summary>Points input <paramref name="index"/> at <paramref name="value"/> (null = omitted).</summary>
    public void ReplaceInput(int index, Value? value)
    {
        var old = _inputs[index];
        if (ReferenceEquals(old, value)) return;
        if (Graph is not null) old?.RemoveUse(new Usage(this, null, index));
        _inputs[index] = value;
        if (Graph is not null) value?.AddUse(new Usage(this, null, index));
    }

    public void AppendInput(Value? value)
    {
        Array.Resize(ref _inputs, _inputs.Length + 1);
        _inputs[^1] = value;
        if (Graph is not null) value?.AddUse(new Usage(this, null, _inputs.Length - 1));
    }

    /// <summary>Reader only: fills the slots the reading constructor sized, without touching uses.</summary>
    internal void SetInputRaw(int index, Value? value) => _inputs[index] = value;
    internal void SetOutputRaw(int index, Value? value) => _outputs[index] = value;

    /// <summary>Returns output <paramref name="index"/>, creating it when the model does not request it
    /// (e.g. SkipSimplifiedLayerNormalization's residual-sum output 3). The name comes from
    /// <paramref name="names"/>.</summary>
    public Value EnsureOutput(int index, NameAuthority names, string hint)
    {
        if (_outputs.Length <= index) Array.Resize(ref _outputs, index + 1);
        if (_outputs[index] is { } existing) return existing;
        var value = NewOutput(names.NewValueName(hint), index);
        _outputs[index] = value;
        Graph?.Register(value);
        return value;
    }

    private Value NewOutput(string name, int index)
    {
        // A detached node's outputs belong to no graph yet; Graph.Insert adopts them.
        var value = new Value(Graph!, name) { Producer = this, OutputIndex = index };
        return value;
    }

    internal void AttachUses()
    {
        for (int i = 0; i < _inputs.Length; i++) _inputs[i]?.AddUse(new Usage(this, null, i));
    }

    internal void DetachUses()
    {
        for (int i = 0; i < _inputs.Length; i++) _inputs[i]?.RemoveUse(new Usage(this, null, i));
    }

    /// <summary>"OpType 'name'" (or the first output when unnamed), for messages.</summary>
    public string Describe()
    {
        string op = IsDefaultDomain ? OpType : $"{Domain}::{OpType}";
        string id = Name.Length > 0 ? Name : _outputs.FirstOrDefault(o => o is not null)?.Name ?? "?";
        return $"{op} '{id}'";
    }

    public override string ToString() => Describe();
}

/// <summary>Which of name, op_type and domain a NodeProto set (proto2 field presence).</summary>
[Flags]
internal enum NodeFields : byte
{
    None = 0,
    Name = 1,
    OpType = 2,
    Domain = 4,
}
