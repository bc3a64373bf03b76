using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Runtime;

/// <summary>An ONNX Runtime session on one model file, fed and read through <see cref="TensorData"/>.
/// Every OrtValue it creates is disposed before a call returns, except the outputs of
/// <see cref="RunWithoutCopy"/>, which the caller disposes.</summary>
public sealed class ModelSession : IDisposable
{
    internal ModelSession(InferenceSession session, string modelPath, ExecutionDevice device, string? deviceNote)
    {
        Session = session;
        ModelPath = modelPath;
        Device = device;
        DeviceNote = deviceNote;
        Inputs = InputSpec.FromSession(session);
    }

    /// <summary>The underlying session, for what this wrapper does not cover.</summary>
    public InferenceSession Session { get; }
    public string ModelPath { get; }

    /// <summary>The device the session runs on (never Auto).</summary>
    public ExecutionDevice Device { get; }

    /// <summary>The one-line note when Auto fell back to the CPU; null otherwise.</summary>
    public string? DeviceNote { get; }

    public IReadOnlyList<InputSpec> Inputs { get; }
    public IReadOnlyList<string> OutputNames => Session.OutputNames;

    /// <summary>Deterministic inputs for this session (see <see cref="InputSynthesizer"/>).</summary>
    public IReadOnlyList<TensorData> SynthesizeInputs(InputSynthesisOptions options) => InputSynthesizer.Create(Inputs, options);

    /// <summary>Runs the model and returns the requested outputs (all by default) in order, copied into
    /// managed memory (see <see cref="RunWithoutCopy"/> for outputs read in place).</summary>
    public IReadOnlyList<TensorData> Run(IEnumerable<TensorData> inputs, IEnumerable<string>? outputNames = null)
    {
        using var results = RunWithoutCopy(inputs, outputNames);
        var outputs = new List<TensorData>(results.Count);
        foreach (var output in results) outputs.Add(output.ToTensorData());
        return outputs;
    }

    /// <summary>Runs the model and returns the requested outputs (all by default) in order without copying
    /// them: each is read in place from ONNX Runtime's memory until the caller disposes the result.</summary>
    public SessionOutputs RunWithoutCopy(IEnumerable<TensorData> inputs, IEnumerable<string>? outputNames = null)
    {
        var feeds = inputs.ToList();
        var names = (outputNames ?? Session.OutputNames).ToList();
        var values = new List<OrtValue>(feeds.Count);
        try
        {
            foreach (var feed in feeds) values.Add(ToOrtValue(feed));
            using var runOptions = new RunOptions();
            var results = Session.Run(runOptions, feeds.Select(f => f.Name).ToList(), values, names);
            return new SessionOutputs(names, results);
        }
        catch (OnnxRuntimeException ex)
        {
            throw new ModelRunException($"{ModelPath}: ONNX Runtime run failed: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    private static OrtValue ToOrtValue(TensorData data)
    {
        if (data.ElementType is TensorDataType.String or TensorDataType.Undefined)
            throw new NotSupportedException($"input '{data.Name}': {data.ElementType.OnnxName()} tensors are not supported");
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)data.ElementType, data.Dims.ToArray());
        try
        {
            if (data.Bytes.Length > 0) data.Bytes.CopyTo(value.GetTensorMutableRawData());
            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    public void Dispose() => Session.Dispose();
}

/// <summary>Runs a model file once: open, run, dispose.</summary>
public static class ModelRunner
{
    public static IReadOnlyList<TensorData> Run(string modelPath, IEnumerable<TensorData> inputs,
        SessionSettings? settings = null, IEnumerable<string>? outputNames = null)
    {
        using var session = SessionFactory.Open(modelPath, settings);
        return session.Run(inputs, outputNames);
    }

    /// <summary>Opens the model, synthesizes its inputs, runs it; returns inputs and outputs.</summary>
    public static (IReadOnlyList<TensorData> Inputs, IReadOnlyList<TensorData> Outputs) RunSynthesized(
        string modelPath, InputSynthesisOptions inputOptions, SessionSettings? settings = null)
    {
        using var session = SessionFactory.Open(modelPath, settings);
        var inputs = session.SynthesizeInputs(inputOptions);
        return (inputs, session.Run(inputs));
    }
}
