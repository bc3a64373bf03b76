using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Runtime;

/// <summary>A run's outputs left where ONNX Runtime put them (see <see cref="ModelSession.RunWithoutCopy"/>):
/// each is a <see cref="Tensor"/> reading the OrtValue's memory, valid until this object is disposed. Probes
/// that fetch many large outputs reduce them in place (or copy the few they keep with
/// <see cref="OrtTensor.ToTensorData"/>) instead of paying for a managed copy of each.</summary>
public sealed class SessionOutputs : IReadOnlyList<OrtTensor>, IDisposable
{
    private readonly IDisposableReadOnlyCollection<OrtValue> _values;
    private readonly OrtTensor[] _tensors;

    internal SessionOutputs(IReadOnlyList<string> names, IDisposableReadOnlyCollection<OrtValue> values)
    {
        _values = values;
        try
        {
            _tensors = new OrtTensor[names.Count];
            int i = 0;
            foreach (var value in values)
            {
                _tensors[i] = OrtTensor.Wrap(names[i], value, this);
                i++;
            }
        }
        catch
        {
            values.Dispose();
            throw;
        }
    }

    public bool IsDisposed { get; private set; }

    public int Count => _tensors.Length;
    public OrtTensor this[int index] => _tensors[index];

    /// <summary>The output named <paramref name="name"/>.</summary>
    public OrtTensor this[string name] => _tensors.FirstOrDefault(t => t.Name == name)
        ?? throw new KeyNotFoundException($"no output '{name}' was requested (requested: {string.Join(", ", _tensors.Select(t => t.Name))})");

    public IEnumerator<OrtTensor> GetEnumerator() => ((IEnumerable<OrtTensor>)_tensors).GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Frees the outputs' native memory; their tensors refuse to be read afterwards.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        _values.Dispose();
    }
}

/// <summary>One output of a run, read in place from its OrtValue (no managed copy) until the
/// <see cref="SessionOutputs"/> that holds it is disposed.</summary>
public sealed class OrtTensor : Tensor
{
    private readonly OrtValue _value;
    private readonly SessionOutputs _owner;

    private OrtTensor(string name, TensorDataType type, long[] dims, OrtValue value, SessionOutputs owner) : base(type, dims)
    {
        Name = name;
        _value = value;
        _owner = owner;
    }

    internal static OrtTensor Wrap(string name, OrtValue value, SessionOutputs owner)
    {
        if (!value.IsTensor)
            throw new NotSupportedException($"output '{name}' is a {value.OnnxType}, not a tensor");
        var info = value.GetTensorTypeAndShape();
        var type = (TensorDataType)info.ElementDataType;
        if (type == TensorDataType.String || type.BitsPerElement() == 0)
            throw new NotSupportedException($"output '{name}': {type.OnnxName()} tensors are not supported");
        return new OrtTensor(name, type, info.Shape, value, owner);
    }

    public string Name { get; }

    /// <summary>Native memory owned by ONNX Runtime.</summary>
    public override TensorStorage Storage => TensorStorage.Memory;

    /// <summary>The underlying OrtValue (owned by the <see cref="SessionOutputs"/>; do not dispose it).</summary>
    public OrtValue Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owner.IsDisposed, _owner);
            return _value;
        }
    }

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > ByteLength - length) throw new ArgumentOutOfRangeException(nameof(offset));
        if (length == 0) return [];
        return Value.GetTensorMutableRawData().Slice(checked((int)offset), length);
    }

    /// <summary>A managed copy, for the outputs a caller keeps after disposing the run's outputs.</summary>
    public TensorData ToTensorData() => new(Name, ToArrayTensor());
}
