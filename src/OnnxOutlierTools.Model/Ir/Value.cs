using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>One use of a value: input <see cref="Index"/> of <see cref="Node"/>, or output
/// <see cref="Index"/> of graph <see cref="GraphOutputOf"/> (graph outputs are uses too).</summary>
public readonly record struct Usage(Node? Node, Graph? GraphOutputOf, int Index)
{
    public bool IsGraphOutput => GraphOutputOf is not null;
    public override string ToString() => Node is not null ? $"{Node.Describe()} input {Index}" : $"graph output {Index}";
}

/// <summary>A named value (an edge): produced by one node or defined by the graph (input or
/// initializer), used by any number of nodes and graph outputs. Use-def information changes only
/// through <see cref="Node"/> and <see cref="Graph"/> methods, so it is never stale.</summary>
public sealed class Value
{
    private readonly UseSet _uses = new();

    internal Value(Graph graph, string name)
    {
        Graph = graph;
        _name = name;
    }

    private string _name;

    public string Name
    {
        get => _name;
        set
        {
            string old = _name;
            _name = value;
            if (InNameIndex && !string.Equals(old, value, StringComparison.Ordinal)) Graph.Renamed(this, old);
        }
    }

    /// <summary>Registered in <see cref="Graph"/>'s name index (see Graph.FindValue).</summary>
    internal bool InNameIndex { get; set; }

    /// <summary>How many value_info entries of its graph name this value (see ValueInfoList).</summary>
    internal int ValueInfoEntries { get; set; }

    /// <summary>The graph whose scope defines this value.</summary>
    public Graph Graph { get; internal set; }

    public Node? Producer { get; internal set; }
    public int OutputIndex { get; internal set; }

    private TypeProto? _type;

    /// <summary>Declared type (from graph input/output/value_info), if any. Setting it replaces the
    /// declarations read from the file when the model is saved.</summary>
    public TypeProto? Type
    {
        get => _type;
        set { _type = value; TypeEdited = true; }
    }

    internal void SetTypeFromFile(TypeProto? type) => _type ??= type;

    /// <summary>True once the type was set after loading: declarations are then written from <see cref="Type"/>.</summary>
    internal bool TypeEdited { get; private set; }

    /// <summary>The value_info entry as read (without its name), kept for a lossless save.</summary>
    internal ValueInfoProto? InfoEntry { get; set; }

    /// <summary>The initializer data when this value is an initializer.</summary>
    public Tensor? ConstValue { get; internal set; }

    public bool IsInitializer => ConstValue is not null;
    public bool IsGraphInput { get; internal set; }
    public bool IsGraphOutput => _uses.Any(u => u.IsGraphOutput);

    /// <summary>Defined by a sparse_initializer (kept in protobuf form, not modelled as a tensor).</summary>
    public bool IsSparseInitializer { get; internal set; }

    /// <summary>Referenced but never defined in any enclosing scope (an invalid or partial graph).</summary>
    public bool IsUndefined => Producer is null && !IsGraphInput && !IsInitializer && !IsSparseInitializer;

    public IReadOnlyCollection<Usage> Uses => _uses;

    public IEnumerable<Node> Consumers => _uses.Where(u => u.Node is not null).Select(u => u.Node!).Distinct();

    internal void AddUse(Usage use) => _uses.Add(use);
    internal void RemoveUse(Usage use) => _uses.Remove(use);

    /// <summary>Element type from the declared type or the initializer.</summary>
    public TensorDataType? ElementType =>
        ConstValue?.DataType ?? (Type?.TensorType is { HasElemType: true } t ? (TensorDataType)t.ElemType : null);

    /// <summary>Shape from the declared type or the initializer; null when unknown.</summary>
    public IReadOnlyList<Dim>? Shape
    {
        get
        {
            if (ConstValue is not null) return ConstValue.Dims.Select(d => new Dim(d)).ToArray();
            var shape = Type?.TensorType?.Shape;
            return shape is null ? null : shape.Dim.Select(Dim.From).ToArray();
        }
    }

    /// <summary>Sets a tensor type (for new values that later passes add).</summary>
    public void SetTensorType(TensorDataType elementType, IEnumerable<Dim>? shape)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)elementType };
        if (shape is not null)
        {
            tensor.Shape = new TensorShapeProto();
            foreach (var d in shape) tensor.Shape.Dim.Add(d.ToProto());
        }
        Type = new TypeProto { TensorType = tensor };
        if (!Graph.ValueInfos.Contains(this) && !IsGraphInput && !IsGraphOutput && !IsInitializer) Graph.ValueInfos.Add(this);
    }

    /// <summary>Makes every use of this value (node inputs, also in nested graphs, and graph outputs)
    /// use <paramref name="replacement"/> instead, except the inputs of <paramref name="except"/> (the node
    /// that computes the replacement from this value, which must keep reading it).</summary>
    public void ReplaceAllUsesWith(Value replacement, Node? except = null)
    {
        if (ReferenceEquals(replacement, this)) return;
        foreach (var use in _uses.ToArray())
        {
            if (except is not null && ReferenceEquals(use.Node, except)) continue;
            if (use.Node is not null) use.Node.ReplaceInput(use.Index, replacement);
            else use.GraphOutputOf!.SetOutput(use.Index, replacement);
        }
    }

    public override string ToString() => Name;
}

/// <summary>A dimension: a number, a symbolic name, or unknown.</summary>
public readonly record struct Dim(long? Value, string? Param = null)
{
    public Dim(long value) : this((long?)value) { }
    public static Dim Symbolic(string name) => new(null, name);
    public static readonly Dim Unknown = new(null, null);
    public bool IsKnown => Value is not null;

    internal static Dim From(TensorShapeProto.Types.Dimension d) =>
        d.HasDimValue ? new Dim(d.DimValue) : d.HasDimParam ? new Dim(null, d.DimParam) : Unknown;

    internal TensorShapeProto.Types.Dimension ToProto()
    {
        var d = new TensorShapeProto.Types.Dimension();
        if (Value is long v) d.DimValue = v;
        else if (Param is not null) d.DimParam = Param;
        return d;
    }

    public override string ToString() => Value?.ToString() ?? Param ?? "?";
}
