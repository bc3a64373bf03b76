using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes.Fp16;

/// <summary>A float32 tensor as float16, converted chunk by chunk when its bytes are read (a weight is never
/// held whole): round to nearest even; values beyond the float16 range saturate to +-65504 instead of becoming
/// infinities (an exporter's float32 minimum used as a mask, say). NaN stays NaN.</summary>
internal static class HalfTensor
{
    public const float Max = 65504f;

    public static Tensor From(Tensor source)
    {
        if (source.DataType != TensorDataType.Float) throw new ArgumentException($"expected a FLOAT tensor, got {source.DataType.OnnxName()}", nameof(source));
        return new GeneratedTensor(TensorDataType.Float16, [.. source.Dims], (byteOffset, destination) =>
        {
            long first = byteOffset / 2;
            int count = destination.Length / 2;
            var floats = new float[count];
            source.CopyTo(first, floats.AsSpan());
            var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(destination);
            for (int i = 0; i < count; i++) halves[i] = (Half)Math.Clamp(floats[i], -Max, Max);
        });
    }

    /// <summary>How many elements lie beyond the float16 range (saturated by <see cref="From"/>).</summary>
    public static long CountOutOfRange(Tensor source)
    {
        long count = 0;
        var buffer = new float[1 << 16];
        for (long offset = 0; offset < source.ElementCount; offset += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, source.ElementCount - offset);
            source.CopyTo(offset, buffer.AsSpan(0, n));
            for (int i = 0; i < n; i++) if (Math.Abs(buffer[i]) > Max && !float.IsNaN(buffer[i])) count++;
        }
        return count;
    }
}
