using Google.Protobuf;
using Google.Protobuf.Collections;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.IO;

public sealed record LoadOptions
{
    /// <summary>When true (the default) every external data file must exist and be long enough, and is
    /// memory-mapped. When false (used by <c>inspect</c>) missing files are recorded in
    /// <see cref="Model.MissingExternalFiles"/> and only reading their tensors fails.</summary>
    public bool RequireExternalData { get; init; } = true;

    /// <summary>Protobuf nesting limit (nested graphs count); Google.Protobuf's default is 100.</summary>
    public int RecursionLimit { get; init; } = 200;
}

/// <summary>Loads an ONNX file into the IR. External tensors are memory-mapped and read lazily; any
/// problem becomes a <see cref="ModelLoadException"/> naming the file.</summary>
public static class ModelReader
{
    public static Model Load(string path, LoadOptions? options = null)
    {
        string fullPath = FullPath(path);
        var bytes = MapModelFile(path, fullPath, out var identity);
        var model = LoadFromMemory(bytes, path, options);
        model.SourceIdentity = identity;
        model.SourceBytes = bytes;
        return model;
    }

    /// <summary>Loads a model from bytes already in memory. <paramref name="path"/> names the model in
    /// errors and locates external data (relative to its folder); the file itself need not exist.
    /// The array is used in place and must not change while the model is alive.</summary>
    public static Model LoadFromBytes(byte[] bytes, string path, LoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        var model = LoadFromMemory(bytes, path, options);
        model.SourceBytes = bytes;
        return model;
    }

    /// <summary>Parses <paramref name="bytes"/> in place: large embedded raw_data tensors are views into it.</summary>
    private static Model LoadFromMemory(ReadOnlyMemory<byte> bytes, string path, LoadOptions? options)
    {
        options ??= new LoadOptions();
        FullPath(path);
        if (bytes.Length == 0) throw new ModelLoadException(path, "empty file (0 bytes)");
        // The main graph's nodes are parsed one at a time while the IR is built (peak memory); any
        // trouble there falls back to the whole-message parse below, which reports it as always.
        if (GraphSplitter.TrySplit(bytes, options.RecursionLimit, out var split, out var nodeRanges))
        {
            try
            {
                return FromProto(split, path, options, new NodeSource(nodeRanges.Count, i => ParseNode(bytes, nodeRanges[i])));
            }
            catch (ModelLoadException ex) when (ex.InnerException is NodeParseException) { }
        }
        ModelProto proto;
        using (var input = CodedInputStream.CreateWithLimits(AsStream(bytes), int.MaxValue, options.RecursionLimit))
        {
            try
            {
                proto = ModelProto.Parser.ParseFrom(input);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                throw new ModelLoadException(path, $"not a valid ONNX protobuf: error at byte {input.Position} of {bytes.Length} ({Text.Printable.FirstLine(ex.Message)})", ex);
            }
        }
        return FromProto(proto, path, options);
    }

    private static Stream AsStream(ReadOnlyMemory<byte> bytes)
    {
        if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray(bytes, out var segment))
            return new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false);
        return new ReadOnlyMemoryStream(bytes);
    }

    /// <summary>A read-only stream over memory (the mapped file), for the whole-message parse.</summary>
    private sealed class ReadOnlyMemoryStream(ReadOnlyMemory<byte> bytes) : Stream
    {
        private int _position;
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => bytes.Length;
        public override long Position { get => _position; set => _position = (int)Math.Clamp(value, 0, bytes.Length); }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            int n = Math.Min(buffer.Length, bytes.Length - _position);
            bytes.Span.Slice(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }
        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => bytes.Length + offset,
        };
        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Builds the IR from a parsed protobuf. <paramref name="path"/> locates external data
    /// (relative to its folder) and names the file in errors. The protobuf is taken over, not copied.</summary>
    public static Model FromProto(ModelProto proto, string path, LoadOptions? options = null) => FromProto(proto, path, options, null);

    private static Model FromProto(ModelProto proto, string path, LoadOptions? options, NodeSource? mainNodes)
    {
        options ??= new LoadOptions();
        if (proto.Graph is null)
            throw new ModelLoadException(path, "no graph: the file parses as protobuf but is not an ONNX model");
        if (proto.IrVersion <= 0)
            throw new ModelLoadException(path, $"invalid ir_version {proto.IrVersion}: the file is not an ONNX model");
        // Protobuf has no end marker: a file cut right after its graph parses. IR 3+ requires an opset
        // import (it comes after the graph in exporters' field order), so its absence means a cut file.
        if (proto.IrVersion >= 3 && proto.OpsetImport.Count == 0)
            throw new ModelLoadException(path, $"no opset_import (required for ir_version {proto.IrVersion}): the file is incomplete, perhaps truncated");
        string fullPath = FullPath(path);
        string folder = Path.GetDirectoryName(fullPath)!;
        var graphProto = proto.Graph;
        proto.Graph = null;
        var model = new Model(proto, new Graph()) { SourcePath = fullPath };
        try
        {
            var builder = new IrBuilder(model, folder, options, path);
            model.Graph = builder.BuildGraph(graphProto, null, null, mainNodes);
            return model;
        }
        catch (ModelLoadException)
        {
            model.Dispose();
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            model.Dispose();
            throw new ModelLoadException(path, Text.Printable.FirstLine(ex.Message), ex);
        }
    }

    /// <summary>The absolute path, or a load error naming <paramref name="path"/> when it is not a usable path.</summary>
    private static string FullPath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (string.IsNullOrWhiteSpace(path)) throw new ModelLoadException(path, "empty path");
        try { return Path.GetFullPath(path); }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ModelLoadException(path, $"invalid path: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
    }

    private static ReadOnlyMemory<byte> MapModelFile(string path, string fullPath, out FileIdentity? identity)
    {
        // stat first (following links, as the hub cache's files are links): a FIFO would block the open,
        // a device would be read forever.
        var facts = FileFacts.Of(fullPath);
        if (facts.Kind == FileKind.Directory) throw new ModelLoadException(path, "is a directory, not an ONNX model file");
        if (!facts.Exists)
            throw new ModelLoadException(path, FileFacts.OfEntry(fullPath).Kind == FileKind.SymbolicLink ? "is a symbolic link whose target does not exist" : "file not found");
        if (facts.Kind != FileKind.Regular) throw new ModelLoadException(path, $"is {facts.KindText}, not an ONNX model file");
        try
        {
            using var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            identity = FileFacts.Of(stream.SafeFileHandle).Identity; // the file opened, whatever its name names later
            long length = stream.Length;
            if (length == 0) throw new ModelLoadException(path, "empty file (0 bytes)");
            if (length > Array.MaxLength)
                throw new ModelLoadException(path, $"{length} bytes: a single ONNX protobuf is limited to 2 GB (large models keep weights in external data)");
            // Mapped, not read: parsing touches the protobuf structure, and a tensor's pages are read only
            // when its data is (inspect reads none).
            return new MappedFileMemory(stream, (int)length).Memory;
        }
        catch (EndOfStreamException ex) { throw new ModelLoadException(path, "cannot read: the file shrank while it was read", ex); }
        catch (IOException ex) { throw new ModelLoadException(path, $"cannot read: {Text.Printable.FirstLine(ex.Message)}", ex); }
        catch (UnauthorizedAccessException ex) { throw new ModelLoadException(path, $"cannot read: {Text.Printable.FirstLine(ex.Message)}", ex); }
    }

    /// <summary>A graph's nodes, handed over one at a time (the caller drops each after converting it).</summary>
    private sealed record NodeSource(int Count, Func<int, NodeProto> Take)
    {
        public static NodeSource Of(RepeatedField<NodeProto> field)
        {
            var nodes = field.ToArray();
            field.Clear();
            return new NodeSource(nodes.Length, i =>
            {
                var np = nodes[i];
                nodes[i] = null!; // each NodeProto can go as soon as it is converted
                return np;
            });
        }
    }

    private sealed class NodeParseException(Exception inner) : Exception(inner.Message, inner);

    private static NodeProto ParseNode(ReadOnlyMemory<byte> bytes, (int Start, int Length) range)
    {
        try { return GraphSplitter.ParseNode(bytes, range); }
        catch (Exception ex) when (ex is not OutOfMemoryException) { throw new NodeParseException(ex); }
    }

    /// <summary>Protobuf -> IR, one graph at a time, resolving names through nested scopes.</summary>
    private sealed class IrBuilder(Model model, string folder, LoadOptions options, string path)
    {
        public Graph BuildGraph(GraphProto gp, Graph? parent, Node? parentNode = null, NodeSource? nodeSource = null)
        {
            var nodes = nodeSource ?? NodeSource.Of(gp.Node);
            var inputs = gp.Input.ToArray();
            var outputs = gp.Output.ToArray();
            var inits = gp.Initializer.ToArray();
            var infos = gp.ValueInfo.ToArray();
            gp.Node.Clear(); gp.Input.Clear(); gp.Output.Clear(); gp.Initializer.Clear(); gp.ValueInfo.Clear();

            var graph = new Graph(gp, gp.HasName ? gp.Name : "") { ParentNode = parentNode };
            var scope = new Dictionary<string, Value>(StringComparer.Ordinal);

            foreach (var vi in inputs)
            {
                var v = new Value(graph, vi.Name);
                v.SetTypeFromFile(vi.Type);
                if (!scope.TryAdd(vi.Name, v)) throw new ModelLoadException(path, $"graph '{graph.Name}' declares input '{vi.Name}' twice");
                graph.AddInputRaw(v, Decl(vi));
            }
            foreach (var tp in inits)
            {
                var tensor = MakeTensor(tp);
                if (scope.TryGetValue(tp.Name, out var existing))
                {
                    if (!existing.IsGraphInput || existing.IsInitializer)
                        throw new ModelLoadException(path, $"graph '{graph.Name}' defines initializer '{tp.Name}' twice");
                    existing.ConstValue = tensor; // IR < 4 style: initializer that is also a graph input
                    graph.AddInitializerRaw(existing);
                }
                else
                {
                    var v = new Value(graph, tp.Name) { ConstValue = tensor };
                    scope[tp.Name] = v;
                    graph.AddInitializerRaw(v);
                }
            }
            foreach (var sp in gp.SparseInitializer)
            {
                string name = sp.Values?.Name ?? "";
                if (name.Length == 0 || scope.ContainsKey(name)) continue;
                var v = new Value(graph, name) { IsSparseInitializer = true };
                scope[name] = v;
                graph.OtherValues.Add(v);
            }

            // Pass 1: nodes and their outputs, so inputs can refer to values produced later in the file.
            // Inputs already defined (the usual, topological order) and attributes without graphs are
            // converted here, so the names and protobufs of a large graph do not all wait for pass 2.
            var built = new List<(Node node, string[]? inputs, AttributeProto[]? attrs)>(nodes.Count);
            HashSet<string>? redefined = null;
            for (int n = 0; n < nodes.Count; n++)
            {
                var np = nodes.Take(n);
                var inputNames = np.Input.ToArray();
                var outputNames = np.Output.ToArray();
                var attrs = np.Attribute.ToArray();
                np.Input.Clear(); np.Output.Clear(); np.Attribute.Clear();
                var node = NewNode(np, inputNames.Length, outputNames.Length);
                for (int i = 0; i < outputNames.Length; i++)
                {
                    string name = outputNames[i];
                    if (name.Length == 0) continue;
                    var v = new Value(graph, name) { Producer = node, OutputIndex = i };
                    // Some real exports define a name twice (two identical Constants in torch 1.6 GPT-2); like
                    // ONNX Runtime we accept that, and later uses bind to the last definition.
                    if (scope.TryGetValue(name, out var earlier))
                    {
                        if (earlier.IsGraphInput || earlier.IsInitializer)
                            throw new ModelLoadException(path, $"value '{name}' is both a graph input or initializer and an output of {node.Describe()} in graph '{graph.Name}'");
                        (redefined ??= new(StringComparer.Ordinal)).Add(name);
                    }
                    scope[name] = v;
                    node.SetOutputRaw(i, v);
                }
                graph.AppendRaw(node);
                bool defined = true;
                foreach (string name in inputNames)
                    if (name.Length != 0 && !scope.ContainsKey(name)) { defined = false; break; }
                if (defined)
                    for (int i = 0; i < inputNames.Length; i++) node.SetInputRaw(i, inputNames[i].Length == 0 ? null : scope[inputNames[i]]);
                bool graphAttrs = false;
                foreach (var ap in attrs) graphAttrs |= ap.G is not null || ap.Graphs.Count > 0;
                if (!graphAttrs)
                    foreach (var ap in attrs) node.AddAttributeRaw(BuildAttribute(ap, graph, node, scope));
                built.Add((node, defined ? null : inputNames, graphAttrs ? attrs : null));
            }

            // Pass 2: remaining inputs (this scope, then enclosing graphs; a name defined twice binds to its
            // last definition), uses in node order, and graph attributes (nested graphs see all of this scope).
            foreach (var (node, inputNames, attrs) in built)
            {
                if (inputNames is not null)
                    for (int i = 0; i < inputNames.Length; i++) node.SetInputRaw(i, inputNames[i].Length == 0 ? null : Resolve(inputNames[i], graph, scope));
                else if (redefined is not null)
                    for (int i = 0; i < node.Inputs.Count; i++)
                        if (node.Inputs[i] is { } bound && redefined.Contains(bound.Name)) node.SetInputRaw(i, scope[bound.Name]);
                node.AttachUses();
                if (attrs is not null)
                    foreach (var ap in attrs) node.AddAttributeRaw(BuildAttribute(ap, graph, node, scope));
            }

            foreach (var vi in outputs)
            {
                var v = Resolve(vi.Name, graph, scope);
                v.SetTypeFromFile(vi.Type);
                graph.AddOutputRaw(v, Decl(vi));
            }
            foreach (var vi in infos)
            {
                if (!scope.TryGetValue(vi.Name, out var v))
                {
                    v = new Value(graph, vi.Name);
                    graph.OtherValues.Add(v);
                    scope[vi.Name] = v;
                }
                v.SetTypeFromFile(vi.Type);
                v.InfoEntry = Decl(vi);
                graph.ValueInfos.Add(v);
            }
            _scopes.Remove(graph);
            return graph;
        }

        // Scopes of the graphs being built, so a nested graph can resolve outer names.
        private readonly Dictionary<Graph, Dictionary<string, Value>> _scopes = [];

        private Value Resolve(string name, Graph graph, Dictionary<string, Value> scope)
        {
            if (scope.TryGetValue(name, out var v)) return v;
            for (var g = graph.Parent; g is not null; g = g.Parent)
                if (_scopes.TryGetValue(g, out var outer) && outer.TryGetValue(name, out v)) return v;
            // Referenced but defined nowhere: keep the name so the graph round-trips as it was.
            v = new Value(graph, name);
            scope[name] = v;
            graph.OtherValues.Add(v);
            return v;
        }

        // One string per distinct op type, domain and attribute name instead of one per node.
        private readonly Dictionary<string, string> _strings = new(StringComparer.Ordinal);

        private string Intern(string s)
        {
            if (!_strings.TryGetValue(s, out var kept)) _strings[s] = kept = s;
            return kept;
        }

        /// <summary>The IR node; the NodeProto (its inputs, outputs and attributes already taken) is kept
        /// only when it holds fields the IR does not model (doc_string, overload, metadata, unknown fields).</summary>
        private Node NewNode(NodeProto np, int inputs, int outputs)
        {
            var present = (np.HasName ? NodeFields.Name : 0) | (np.HasOpType ? NodeFields.OpType : 0) | (np.HasDomain ? NodeFields.Domain : 0);
            int modelled = (np.HasName ? 1 + CodedOutputStream.ComputeStringSize(np.Name) : 0)
                + (np.HasOpType ? 1 + CodedOutputStream.ComputeStringSize(np.OpType) : 0)
                + (np.HasDomain ? 1 + CodedOutputStream.ComputeStringSize(np.Domain) : 0);
            var extras = np.CalculateSize() == modelled ? null : np;
            return new Node(extras, present, Intern(np.HasDomain ? np.Domain : ""), Intern(np.OpType), np.HasName ? np.Name : "", inputs, outputs);
        }

        private Attr BuildAttribute(AttributeProto ap, Graph graph, Node node, Dictionary<string, Value> scope)
        {
            if (ap.HasName) ap.Name = Intern(ap.Name);
            if (ap.G is null && ap.Graphs.Count == 0) return Attr.FromFile(ap);
            _scopes[graph] = scope;
            var subgraphs = new List<Graph>();
            if (ap.G is not null)
            {
                var g = ap.G;
                ap.G = null;
                subgraphs.Add(BuildGraph(g, graph, node));
            }
            if (ap.Graphs.Count > 0)
            {
                var gs = ap.Graphs.ToArray();
                ap.Graphs.Clear();
                foreach (var g in gs) subgraphs.Add(BuildGraph(g, graph, node));
            }
            return new Attr(ap, subgraphs);
        }

        /// <summary>A declaration as read, without its name (names may change; the rest is kept).</summary>
        private static ValueInfoProto Decl(ValueInfoProto vi)
        {
            vi.ClearName();
            return vi;
        }

        private Tensor MakeTensor(TensorProto tp)
        {
            try
            {
                if (tp.DataLocation != TensorProto.Types.DataLocation.External) return new ProtoTensor(tp);
                return MakeExternalTensor(tp);
            }
            catch (TensorFormatException ex)
            {
                throw new ModelLoadException(path, $"initializer '{tp.Name}': {ex.Message}", ex);
            }
        }

        private Tensor MakeExternalTensor(TensorProto tp)
        {
            var reference = ExternalDataReference.Parse(tp);
            var dataType = (TensorDataType)tp.DataType;
            if (!dataType.IsKnown()) throw new TensorFormatException($"unknown data type {tp.DataType}");
            string location = reference.Location;
            if (Path.IsPathRooted(location) || location.StartsWith('/') || location.StartsWith('\\'))
                throw new ModelLoadException(path, $"initializer '{tp.Name}': external data location '{location}' is an absolute path; locations must be relative to the model folder");
            string full = Path.GetFullPath(Path.Combine(folder, location));
            string root = folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar;
            if (!full.StartsWith(root, StringComparison.Ordinal))
                throw new ModelLoadException(path, $"initializer '{tp.Name}': external data location '{location}' escapes the model folder");
            CheckRealLocation(tp.Name, location, full);

            var probe = new MissingExternalTensor(tp, location, "");
            long needed = probe.ByteLength;
            if (reference.Length is long declared && declared != needed)
                throw new ModelLoadException(path, $"initializer '{tp.Name}': external length {declared} does not match {probe.DataType.OnnxName()}[{string.Join(",", probe.Dims)}] ({needed} bytes)");

            if (!model.ExternalFiles.TryGetValue(full, out var file))
            {
                var facts = FileFacts.Of(full);
                if (facts.Kind != FileKind.Regular)
                {
                    string reason = facts.Kind switch
                    {
                        FileKind.Missing => FileFacts.OfEntry(full).Kind == FileKind.SymbolicLink ? "is a symbolic link whose target does not exist" : "not found",
                        FileKind.Directory => "is a directory",
                        _ => $"is {facts.KindText}, not a data file",
                    };
                    if (options.RequireExternalData)
                        throw new ModelLoadException(path, $"external data file '{location}' {reason} (needed by initializer '{tp.Name}')");
                    model.AddMissing(location, reason);
                    return new MissingExternalTensor(tp, location, $"'{location}' {reason}");
                }
                try { file = new ExternalDataFile(full); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new ModelLoadException(path, $"external data file '{location}' cannot be read: {Text.Printable.FirstLine(ex.Message)}", ex);
                }
                model.AddExternalFile(file);
            }
            // Written as a subtraction: offset + needed can overflow for a corrupt offset.
            if (reference.Offset > file.Length - needed)
            {
                string problem = $"external data file '{location}' is too short: initializer '{tp.Name}' needs {needed} bytes at offset {reference.Offset} but the file has {file.Length}";
                if (options.RequireExternalData) throw new ModelLoadException(path, problem);
                model.AddMissing(location, "too short");
                return new MissingExternalTensor(tp, location, problem);
            }
            return new MappedTensor(tp, file, reference.Offset);
        }

        /// <summary>The lexical test above cannot see links: a link inside the folder (to a file or to a
        /// directory) may lead anywhere. The resolved data path must lie in the model folder's real path,
        /// or beside the model file's own real target (the hub cache links both files into blobs/).</summary>
        private void CheckRealLocation(string tensor, string location, string full)
        {
            if (!FileFacts.Of(full).Exists) return; // reported as missing later
            string real;
            try { real = FileSystemOps.RealPath(full); }
            catch (IOException ex) { throw new ModelLoadException(path, $"initializer '{tensor}': external data location '{location}': {Text.Printable.FirstLine(ex.Message)}", ex); }
            _realFolder ??= FileSystemOps.RealPath(folder);
            _realModelFolder ??= model.SourcePath is { } source && FileFacts.Of(source).Exists
                ? Path.GetDirectoryName(FileSystemOps.RealPath(source))! : _realFolder;
            if (FileSystemOps.IsInside(real, _realFolder) || FileSystemOps.IsInside(real, _realModelFolder)) return;
            throw new ModelLoadException(path, $"initializer '{tensor}': external data location '{location}' resolves through a symbolic link to '{real}', outside the model folder (external data must stay inside the folder of the model or of the file its link points to)");
        }

        private string? _realFolder, _realModelFolder;
    }
}
