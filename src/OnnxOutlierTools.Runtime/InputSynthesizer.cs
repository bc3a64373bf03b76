using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Runtime;

/// <summary>A model input: name, element type and declared shape (numbers, symbolic names or unknown).</summary>
public sealed record InputSpec(string Name, TensorDataType ElementType, IReadOnlyList<Dim> Shape)
{
    /// <summary>The inputs ORT asks for (initializers excluded).</summary>
    public static IReadOnlyList<InputSpec> FromSession(InferenceSession session) =>
        session.InputNames.Select(name =>
        {
            var meta = session.InputMetadata[name];
            if (!meta.IsTensor) return new InputSpec(name, TensorDataType.Undefined, []);
            var dims = meta.Dimensions.Select((d, i) =>
                d >= 0 ? new Dim(d) : meta.SymbolicDimensions[i] is { Length: > 0 } p ? Dim.Symbolic(p) : Dim.Unknown).ToArray();
            return new InputSpec(name, (TensorDataType)meta.ElementDataType, dims);
        }).ToArray();

    /// <summary>The graph inputs of an IR model, without inputs that also have an initializer (IR &lt; 4 style).</summary>
    public static IReadOnlyList<InputSpec> FromModel(Model model) =>
        model.Graph.Inputs.Where(v => !v.IsInitializer)
            .Select(v => new InputSpec(v.Name, v.ElementType ?? TensorDataType.Undefined, v.Shape ?? [Dim.Unknown])).ToArray();

    public override string ToString() => $"{Name}: {ElementType.OnnxName()}[{string.Join(",", Shape)}]";
}

/// <summary>How a synthesized input is filled when no generator is given (decided from its name and type).</summary>
public enum InputRole
{
    /// <summary>Integer token ids: element i is (7*i + 3) mod <see cref="InputSynthesisOptions.IdUpperBound"/>.</summary>
    Ids,
    /// <summary>A name containing "mask", or a bool input: all ones (true).</summary>
    Mask,
    /// <summary>A name containing "position": the index along the last axis plus <see cref="InputSynthesisOptions.PositionOffset"/>.</summary>
    Positions,
    /// <summary>Floating point: uniform in [-FloatRange, FloatRange] from a seeded generator.</summary>
    Values,
}

/// <summary>Makes the data for one input given its resolved shape.</summary>
public delegate TensorData InputGenerator(InputSpec input, long[] dims);

public sealed record InputSynthesisOptions
{
    /// <summary>Sizes of symbolic dimensions by name (batch_size = 1, sequence_length = 4, ...). A name
    /// written as a sum ("past_sequence_length + sequence_length") that is not bound itself is the sum
    /// of its bound terms.</summary>
    public IReadOnlyDictionary<string, long> Dims { get; init; } = new Dictionary<string, long>();

    /// <summary>Token ids are below this (the vocabulary size).</summary>
    public long IdUpperBound { get; init; } = 1000;

    /// <summary>Added to position ids (the past length when feeding a KV cache).</summary>
    public long PositionOffset { get; init; }

    public ulong Seed { get; init; } = 20261129;

    /// <summary>Float inputs are uniform in [-FloatRange, FloatRange].</summary>
    public float FloatRange { get; init; } = 0.1f;

    /// <summary>Generators for particular inputs, by input name; they win over the defaults.</summary>
    public IReadOnlyDictionary<string, InputGenerator> Generators { get; init; } = new Dictionary<string, InputGenerator>();
}

/// <summary>Deterministic model inputs: the same options give the same bytes on every machine (the
/// float generator is SplitMix64 seeded from <see cref="InputSynthesisOptions.Seed"/> and the input
/// name, so adding an input does not change the others). Supports float, float16, bfloat16, double,
/// int32, int64 and bool inputs; other types need a generator.</summary>
public static class InputSynthesizer
{
    public static IReadOnlyList<TensorData> Create(IEnumerable<InputSpec> inputs, InputSynthesisOptions options) =>
        inputs.Select(input => Create(input, options)).ToArray();

    public static TensorData Create(InputSpec input, InputSynthesisOptions options)
    {
        long[] dims = ResolveShape(input, options.Dims);
        if (options.Generators.TryGetValue(input.Name, out var generator))
        {
            var data = generator(input, dims);
            return data.Name == input.Name ? data : data.WithName(input.Name);
        }
        var type = input.ElementType;
        if (type is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 or TensorDataType.Double
            or TensorDataType.Int32 or TensorDataType.Int64 or TensorDataType.Bool))
            throw new NotSupportedException($"input '{input.Name}' is {type.OnnxName()}: give it a generator in InputSynthesisOptions.Generators");

        long count = dims.Aggregate(1L, (a, d) => checked(a * d));
        var values = new double[checked((int)count)];
        switch (Classify(input))
        {
            case InputRole.Mask:
                Array.Fill(values, 1.0);
                break;
            case InputRole.Positions:
                long last = dims.Length == 0 ? 1 : dims[^1];
                for (int i = 0; i < values.Length; i++) values[i] = options.PositionOffset + (last == 0 ? 0 : i % last);
                break;
            case InputRole.Ids:
                if (options.IdUpperBound <= 0) throw new ArgumentException("IdUpperBound must be positive", nameof(options));
                for (int i = 0; i < values.Length; i++) values[i] = (7L * i + 3) % options.IdUpperBound;
                break;
            default:
                var rng = new SplitMix64(options.Seed ^ Fnv1a(input.Name));
                for (int i = 0; i < values.Length; i++) values[i] = (rng.NextUnit() * 2 - 1) * options.FloatRange;
                break;
        }
        return Encode(input.Name, type, dims, values);
    }

    public static InputRole Classify(InputSpec input)
    {
        string name = input.Name.ToLowerInvariant();
        if (name.Contains("mask") || input.ElementType == TensorDataType.Bool) return InputRole.Mask;
        if (name.Contains("position")) return InputRole.Positions;
        return input.ElementType.IsFloatingPoint() ? InputRole.Values : InputRole.Ids;
    }

    /// <summary>The concrete shape: numeric dims as declared, symbolic ones from <paramref name="bindings"/>.</summary>
    public static long[] ResolveShape(InputSpec input, IReadOnlyDictionary<string, long> bindings)
    {
        var dims = new long[input.Shape.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            var d = input.Shape[i];
            if (d.Value is long v) { dims[i] = v; continue; }
            if (d.Param is null)
                throw new ArgumentException($"input '{input.Name}' dimension {i} has neither a size nor a name; give the input a generator");
            dims[i] = Bind(d.Param, bindings)
                ?? throw new ArgumentException($"input '{input.Name}' dimension {i} ('{d.Param}') is not bound; add it to InputSynthesisOptions.Dims");
        }
        return dims;
    }

    private static long? Bind(string param, IReadOnlyDictionary<string, long> bindings)
    {
        if (bindings.TryGetValue(param, out long size)) return size;
        if (!param.Contains('+')) return null;
        long sum = 0;
        foreach (string term in param.Split('+', StringSplitOptions.TrimEntries))
        {
            if (long.TryParse(term, NumberStyles.None, CultureInfo.InvariantCulture, out long n)) sum += n;
            else if (bindings.TryGetValue(term, out long b)) sum += b;
            else return null;
        }
        return sum;
    }

    /// <summary>Data for <paramref name="name"/> of <paramref name="type"/> from double values (rounded to the type).</summary>
    public static TensorData Encode(string name, TensorDataType type, long[] dims, ReadOnlySpan<double> values)
    {
        int n = values.Length;
        byte[] bytes = new byte[type.ByteLength(n)];
        switch (type)
        {
            case TensorDataType.Float:
                var f = MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
                for (int i = 0; i < n; i++) f[i] = (float)values[i];
                break;
            case TensorDataType.Float16:
                var h = MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
                for (int i = 0; i < n; i++) h[i] = (Half)(float)values[i];
                break;
            case TensorDataType.BFloat16:
                var b = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                for (int i = 0; i < n; i++) b[i] = FloatConversion.ToBFloat16Bits((float)values[i]);
                break;
            case TensorDataType.Double:
                values.CopyTo(MemoryMarshal.Cast<byte, double>(bytes.AsSpan()));
                break;
            case TensorDataType.Int32:
                var i32 = MemoryMarshal.Cast<byte, int>(bytes.AsSpan());
                for (int i = 0; i < n; i++) i32[i] = checked((int)values[i]);
                break;
            case TensorDataType.Int64:
                var i64 = MemoryMarshal.Cast<byte, long>(bytes.AsSpan());
                for (int i = 0; i < n; i++) i64[i] = checked((long)values[i]);
                break;
            case TensorDataType.Bool:
                for (int i = 0; i < n; i++) bytes[i] = values[i] != 0 ? (byte)1 : (byte)0;
                break;
            default:
                throw new NotSupportedException($"input '{name}': cannot encode {type.OnnxName()}");
        }
        return new TensorData(name, type, dims, bytes);
    }

    /// <summary>A generator that fills every element with <paramref name="value"/> (in the input's type).</summary>
    public static InputGenerator Fill(double value) => (input, dims) =>
    {
        long count = dims.Aggregate(1L, (a, d) => checked(a * d));
        var values = new double[checked((int)count)];
        Array.Fill(values, value);
        return Encode(input.Name, input.ElementType, dims, values);
    };

    /// <summary>A generator computing each element from its index along the last axis and its flat index.</summary>
    public static InputGenerator FromIndex(Func<long, long, double> valueAt) => (input, dims) =>
    {
        long count = dims.Aggregate(1L, (a, d) => checked(a * d));
        long last = dims.Length == 0 ? 1 : Math.Max(1, dims[^1]);
        var values = new double[checked((int)count)];
        for (int i = 0; i < values.Length; i++) values[i] = valueAt(i % last, i);
        return Encode(input.Name, input.ElementType, dims, values);
    };

    private static ulong Fnv1a(string text)
    {
        ulong hash = 14695981039346656037;
        foreach (char c in text) { hash ^= c; hash *= 1099511628211; }
        return hash;
    }

    /// <summary>SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, identical everywhere.</summary>
    private struct SplitMix64(ulong seed)
    {
        private ulong _state = seed;

        public ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
        public double NextUnit() => (Next() >> 11) * (1.0 / (1UL << 53));
    }
}
