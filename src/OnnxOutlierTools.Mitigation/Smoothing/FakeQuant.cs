using OnnxOutlierTools.Structure.Roles;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>Int8 symmetric fake quantization (quantize, then dequantize, all in fp32): <c>q = clamp(round(x / scale), -127, 127)
/// * scale</c> with <c>scale = max|x| / 127</c> over the group the scheme defines (SCIENCE.md 3): the whole tensor (static
/// per-tensor activations, or a given calibrated scale), each row (per-token dynamic activations) or each output channel of a
/// weight. Rounding is half to even and the division is a true division, as ONNX's QuantizeLinear does, so a QDQ graph
/// computes the same values. The range is the symmetric [-127, 127] (the -128 code is unused, as in SmoothQuant and ORT's
/// symmetric int8).
/// <para>A group whose max is 0 dequantizes to zeros. A NaN anywhere in a group makes its scale (and so every value of the
/// group) NaN; an infinite value makes the scale infinite, and then every finite value dequantizes to 0 and the infinite ones to
/// NaN: a non-finite input is never hidden.</para></summary>
public static class FakeQuant
{
    public const int Int8Max = 127;

    /// <summary>The symmetric int8 scale of <paramref name="values"/>: max|x| / 127 (0 for no values or all zeros).</summary>
    public static float Scale(ReadOnlySpan<float> values) => values.IsEmpty ? 0 : Math.Abs(TensorPrimitives.MaxMagnitude(values)) / Int8Max;

    /// <summary>Fake-quantizes <paramref name="source"/> with one <paramref name="scale"/> into <paramref name="destination"/>
    /// (which may be <paramref name="source"/> itself). A zero scale gives zeros.</summary>
    public static void Apply(ReadOnlySpan<float> source, float scale, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        if (scale == 0)
        {
            // 0 / 0 would be NaN; a group of zeros is exactly representable.
            if (float.IsNaN(TensorPrimitives.Sum(source))) TensorPrimitives.Multiply(source, float.NaN, destination);
            else destination[..source.Length].Clear();
            return;
        }
        TensorPrimitives.Divide(source, scale, destination);
        Finish(destination[..source.Length], scale);
    }

    /// <summary>Per-tensor: one scale from the values themselves (returned).</summary>
    public static float PerTensor(ReadOnlySpan<float> source, Span<float> destination)
    {
        float scale = Scale(source);
        Apply(source, scale, destination);
        return scale;
    }

    /// <summary>Per-token (dynamic): each row of the row-major [rows, <paramref name="columns"/>] <paramref name="source"/>
    /// quantized by its own max; the scales go to <paramref name="scales"/> when given (length rows).</summary>
    public static void PerRow(ReadOnlySpan<float> source, int columns, Span<float> destination, Span<float> scales = default)
    {
        int rows = Rows(source.Length, columns);
        CheckLengths(source.Length, destination.Length);
        if (!scales.IsEmpty && scales.Length != rows) throw new ArgumentException($"{scales.Length} scales for {rows} rows", nameof(scales));
        for (int r = 0; r < rows; r++)
        {
            var row = source.Slice(r * columns, columns);
            float scale = Scale(row);
            Apply(row, scale, destination.Slice(r * columns, columns));
            if (!scales.IsEmpty) scales[r] = scale;
        }
    }

    /// <summary>A weight per output channel (symmetric): an [out, in] weight (<see cref="WeightLayout.OutIn"/>) is quantized
    /// row by row, an [in, out] one (<see cref="WeightLayout.InOut"/>) column by column. <paramref name="source"/> is the
    /// row-major [<paramref name="rows"/>, <paramref name="columns"/>] matrix as stored; the scales (one per output channel)
    /// go to <paramref name="scales"/> when given.</summary>
    public static void PerOutputChannel(ReadOnlySpan<float> source, int rows, int columns, WeightLayout layout, Span<float> destination, Span<float> scales = default)
    {
        if ((long)rows * columns != source.Length) throw new ArgumentException($"{source.Length} values are not [{rows}, {columns}]", nameof(source));
        if (layout == WeightLayout.OutIn)
        {
            PerRow(source, columns, destination, scales);
            return;
        }
        CheckLengths(source.Length, destination.Length);
        if (!scales.IsEmpty && scales.Length != columns) throw new ArgumentException($"{scales.Length} scales for {columns} output channels", nameof(scales));
        var columnScale = new float[columns];
        var magnitude = new float[columns];
        for (int r = 0; r < rows; r++)
        {
            TensorPrimitives.Abs(source.Slice(r * columns, columns), magnitude);
            // Max (not MaxNumber) so a NaN propagates into its column's scale.
            TensorPrimitives.Max(columnScale, magnitude, columnScale);
        }
        TensorPrimitives.Divide(columnScale, Int8Max, columnScale);
        bool anyZero = columnScale.AsSpan().IndexOf(0f) >= 0;
        for (int r = 0; r < rows; r++)
        {
            var row = source.Slice(r * columns, columns);
            var target = destination.Slice(r * columns, columns);
            TensorPrimitives.Divide(row, columnScale, target);
            if (anyZero)
                for (int c = 0; c < columns; c++)
                    if (columnScale[c] == 0 && !float.IsNaN(row[c])) target[c] = 0;
            TensorPrimitives.Round(target, MidpointRounding.ToEven, target);
            TensorPrimitives.Max(target, -Int8Max, target);
            TensorPrimitives.Min(target, Int8Max, target);
            TensorPrimitives.Multiply(target, columnScale, target);
        }
        if (!scales.IsEmpty) columnScale.CopyTo(scales);
    }

    /// <summary>Round, clamp to the int8 range, dequantize, in place.</summary>
    private static void Finish(Span<float> values, float scale)
    {
        TensorPrimitives.Round(values, MidpointRounding.ToEven, values);
        TensorPrimitives.Max(values, -Int8Max, values);
        TensorPrimitives.Min(values, Int8Max, values);
        TensorPrimitives.Multiply(values, scale, values);
    }

    private static int Rows(int length, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        if (length % columns != 0) throw new ArgumentException($"{length} values are not rows of {columns}");
        return length / columns;
    }

    private static void CheckLengths(int source, int destination)
    {
        if (destination < source) throw new ArgumentException($"destination holds {destination} values, {source} are written", nameof(destination));
    }
}
