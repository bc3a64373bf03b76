using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace OnnxOutlierTools.Runtime;

/// <summary>Creates ONNX Runtime sessions on the requested device. CUDA needs the CUDA 13 / cuDNN 9
/// user-space libraries; without them <c>AppendExecutionProvider_CUDA</c> throws (for example
/// "libcublasLt.so.13: cannot open shared object file"): <see cref="ExecutionDevice.Auto"/> then uses
/// the CPU and reports one line, <see cref="ExecutionDevice.Cuda"/> throws a <see cref="RuntimeSetupException"/>.</summary>
public static class SessionFactory
{
    public static ModelSession Open(string modelPath, SessionSettings? settings = null)
    {
        settings ??= new SessionSettings();
        string fullPath = Path.GetFullPath(modelPath);
        if (!File.Exists(fullPath)) throw new RuntimeSetupException($"{modelPath}: file not found");

        string? note = null;
        if (settings.Device != ExecutionDevice.Cpu)
        {
            try
            {
                return Create(fullPath, settings, ExecutionDevice.Cuda, null);
            }
            catch (RuntimeSetupException ex) when (settings.Device == ExecutionDevice.Auto)
            {
                note = $"{ex.Message}; running on CPU";
                settings.OnDeviceNote?.Invoke(note);
            }
        }
        return Create(fullPath, settings, ExecutionDevice.Cpu, note);
    }

    /// <summary>Opens a session on a model held in memory (a probed or rewritten model that was never written to disk).
    /// Its external data locations are resolved in <paramref name="externalDataFolder"/> (the original model's folder, so
    /// the weights are read where they are, never copied); <paramref name="displayPath"/> names the model in messages.</summary>
    public static ModelSession OpenInMemory(byte[] model, string displayPath, string? externalDataFolder, SessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        settings ??= new SessionSettings();
        string? note = null;
        if (settings.Device != ExecutionDevice.Cpu)
        {
            try
            {
                return Create(model, displayPath, externalDataFolder, settings, ExecutionDevice.Cuda, null);
            }
            catch (RuntimeSetupException ex) when (settings.Device == ExecutionDevice.Auto)
            {
                note = $"{ex.Message}; running on CPU";
                settings.OnDeviceNote?.Invoke(note);
            }
        }
        return Create(model, displayPath, externalDataFolder, settings, ExecutionDevice.Cpu, note);
    }

    /// <summary>Session options for <paramref name="device"/> (Cpu or Cuda); the caller disposes them.
    /// Throws <see cref="RuntimeSetupException"/> when the CUDA provider cannot be appended.</summary>
    public static SessionOptions CreateOptions(SessionSettings settings, ExecutionDevice device)
    {
        if (device == ExecutionDevice.Auto) throw new ArgumentException("Resolve Auto first (Open does).", nameof(device));
        var options = new SessionOptions
        {
            GraphOptimizationLevel = settings.Optimization,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (settings.IntraOpThreads > 0) options.IntraOpNumThreads = settings.IntraOpThreads;
        // For performance work: ORT's per-node profile (JSON, chrome://tracing) of every session this process opens.
        if (Environment.GetEnvironmentVariable("ONNX_OUTLIERS_ORT_PROFILE") is { Length: > 0 } profilePrefix)
        {
            options.ProfileOutputPathPrefix = profilePrefix;   // before EnableProfiling, which passes the prefix to ORT
            options.EnableProfiling = true;
        }
        if (device == ExecutionDevice.Cuda)
        {
            // ORT logs the loader error over several stderr lines; we report it in one line instead.
            var env = OrtEnv.Instance();
            var level = env.EnvLogLevel;
            env.EnvLogLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL;
            try
            {
                options.AppendExecutionProvider_CUDA(settings.CudaDeviceId);
            }
            catch (Exception ex) when (ex is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
            {
                options.Dispose();
                string reason = CudaLibraryProblem() ?? Text.Printable.FirstLine(ex.Message);
                throw new RuntimeSetupException($"CUDA execution provider unavailable: {reason}", ex);
            }
            finally
            {
                env.EnvLogLevel = level;
            }
        }
        return options;
    }

    /// <summary>Why the CUDA provider library does not load (the first missing dependency, e.g.
    /// "libcublasLt.so.13: cannot open shared object file"), from the dynamic loader; null if unknown.</summary>
    private static string? CudaLibraryProblem()
    {
        string file = OperatingSystem.IsWindows() ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";
        string rid = OperatingSystem.IsWindows() ? "win-x64" : "linux-x64";
        string[] candidates = [Path.Combine(AppContext.BaseDirectory, file), Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native", file)];
        foreach (string candidate in candidates.Where(File.Exists))
        {
            try
            {
                NativeLibrary.Free(NativeLibrary.Load(candidate));
                return null;
            }
            catch (DllNotFoundException ex)
            {
                // The loader's own message is the last line, "<path>: <dependency>: cannot open shared object file...".
                string last = ex.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
                int cut = last.IndexOf(file + ": ", StringComparison.Ordinal);
                return cut >= 0 ? last[(cut + file.Length + 2)..] : last;
            }
        }
        return null;
    }

    private static ModelSession Create(byte[] model, string displayPath, string? externalDataFolder, SessionSettings settings, ExecutionDevice device, string? note)
    {
        using var options = CreateOptions(settings, device);
        // ORT's kOrtSessionOptionsModelExternalInitializersFileFolderPath: where a model loaded from memory finds its data.
        if (externalDataFolder is not null) options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", externalDataFolder);
        try
        {
            return new ModelSession(new InferenceSession(model, options), displayPath, device, note);
        }
        catch (OnnxRuntimeException ex)
        {
            string where = device == ExecutionDevice.Cuda ? " on CUDA" : "";
            throw new RuntimeSetupException($"{displayPath}: ONNX Runtime cannot create a session{where}: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
    }

    private static ModelSession Create(string fullPath, SessionSettings settings, ExecutionDevice device, string? note)
    {
        using var options = CreateOptions(settings, device);
        try
        {
            return new ModelSession(new InferenceSession(fullPath, options), fullPath, device, note);
        }
        catch (OnnxRuntimeException ex)
        {
            string where = device == ExecutionDevice.Cuda ? " on CUDA" : "";
            throw new RuntimeSetupException($"{fullPath}: ONNX Runtime cannot create a session{where}: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
    }
}
